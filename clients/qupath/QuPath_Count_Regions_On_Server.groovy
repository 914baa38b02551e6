/*
 * fosgate for QuPath 0.5 / 0.6: count the cells of a whole-slide fosgate prediction per brain region on the
 * server. The regions are this image's annotations (drawn, or atlas regions imported from ABBA: their
 * hierarchy comes from containment or from their ID / Parent ID measurements); a parent region counts its
 * children's cells. Writes <stem>.regions.csv next to the project and adds "fosgate cells" and
 * "fosgate cells per mm^2" measurements to the annotations (matched by name).
 *
 * Use it when fosgate predicted the whole slide (`fosgate predict ... --json` prints the job id) and the
 * annotations are in the slide's full-resolution pixel coordinates. To count detections you have edited in
 * QuPath, use QuPath_Count_Per_Annotation.groovy instead (it counts the detections QuPath holds).
 * Needs the fosgate jars in QuPath's extensions folder (docs/qupath.md) and a running `fosgate serve`.
 */
def FOSGATE_SERVER = "127.0.0.1:50051"
def PREDICTION_JOB_ID = "jb_..."                     // the prediction job of this slide (`fosgate jobs`)
def CLIENT_DIR = "/path/to/fosgate/clients/qupath"   // folder holding FosgateClient.groovy

def FosgateClient = new GroovyClassLoader(getClass().getClassLoader()).parseClass(new File(CLIENT_DIR, "FosgateClient.groovy"))
def annotations = getAnnotationObjects()
if (annotations.isEmpty()) {
    println "fosgate: draw or import the brain regions as annotations first."
    return
}
def tmpDir = File.createTempDir("fosgate-", "")
def regionsFile = new File(tmpDir, "regions.geojson")
exportObjectsToGeoJson(annotations, regionsFile.getAbsolutePath(), "FEATURE_COLLECTION")
def cal = getCurrentServer().getPixelCalibration()
double pixelSize = cal.hasPixelSizeMicrons() ? cal.getAveragedPixelSizeMicrons() : 0.0d
def outDir = new File(PROJECT_BASE_DIR ?: System.getProperty("user.home"))

def fg = FosgateClient.newInstance(FOSGATE_SERVER)
File table
try {
    def job = fg.countRegions(PREDICTION_JOB_ID, regionsFile.getText("UTF-8"), pixelSize)
    job = fg.waitFor(job.getJobId(), { j -> println String.format("fosgate: %3d%% %s", (int) (j.getProgress() * 100), j.getMessage()) })
    table = fg.downloadArtifact(job, ".regions.csv", outDir)
} finally {
    fg.close()
}
// region_id,name,acronym,parent_id,depth,cells,cells_own,area_px,area_mm2,density_per_mm2 (names may be quoted)
def splitCsv = { String line ->
    def cols = []
    def sb = new StringBuilder()
    boolean quoted = false
    for (int i = 0; i < line.length(); i++) {
        char c = line.charAt(i)
        if (quoted) {
            if (c == ('"' as char)) {
                if (i + 1 < line.length() && line.charAt(i + 1) == ('"' as char)) { sb.append(c); i++ } else quoted = false
            } else sb.append(c)
        } else if (c == ('"' as char)) quoted = true
        else if (c == (',' as char)) { cols << sb.toString(); sb = new StringBuilder() }
        else sb.append(c)
    }
    cols << sb.toString()
    return cols
}
def lines = table.readLines()
def header = splitCsv(lines[0])
def byName = [:]
lines.drop(1).each { line ->
    def cols = splitCsv(line)
    def name = cols[header.indexOf("name")]
    if (!byName.containsKey(name)) byName[name] = cols
}
for (annotation in annotations) {
    def name = annotation.getName() ?: annotation.getPathClass()?.toString()
    def cols = byName[name]
    if (cols == null) continue
    annotation.getMeasurementList().put("fosgate cells", cols[header.indexOf("cells")] as double)
    def density = cols[header.indexOf("density_per_mm2")]
    annotation.getMeasurementList().put("fosgate cells per mm^2", density ? density as double : Double.NaN)
}
fireHierarchyUpdate()
println table.text
println "fosgate: saved ${table}"
