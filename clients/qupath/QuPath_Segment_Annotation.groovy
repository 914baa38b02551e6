/*
 * fosgate for QuPath 0.5 / 0.6: segment c-fos cells inside the selected annotation (or the whole image)
 * and import them as detections (class "c-fos", with area, centroid and mean intensity measurements).
 *
 * Set the four settings below, select an annotation and run (Automate > Script editor > Run).
 * Needs the fosgate jars in QuPath's extensions folder (docs/qupath.md) and a running `fosgate serve`.
 */
import qupath.lib.io.PathIO
import qupath.lib.objects.PathObjects
import qupath.lib.regions.RegionRequest

def FOSGATE_SERVER = "127.0.0.1:50051"
def MODEL_ID = "md_..."                      // `fosgate models` lists them
def DOWNSAMPLE = 1.0                         // 1 = full resolution; the model's training resolution is best
def CLIENT_DIR = "/path/to/fosgate/clients/qupath"   // folder holding FosgateClient.groovy

def FosgateClient = new GroovyClassLoader(getClass().getClassLoader()).parseClass(new File(CLIENT_DIR, "FosgateClient.groovy"))
def imageServer = getCurrentServer()
def parent = getSelectedObject()
def roi = parent?.getROI()
def request = roi != null ? RegionRequest.createInstance(imageServer.getPath(), DOWNSAMPLE, roi)
                          : RegionRequest.createInstance(imageServer, DOWNSAMPLE)
def tmpDir = File.createTempDir("fosgate-", "")
def tile = new File(tmpDir, "region.tif")
writeImageRegion(imageServer, request, tile.getAbsolutePath())

def fg = FosgateClient.newInstance(FOSGATE_SERVER)
def detections = []
try {
    def slide = fg.uploadFile(tile)
    def job = fg.predict(slide.getSlideId(), MODEL_ID, [stem: "region"])
    job = fg.waitFor(job.getJobId(), { j -> println String.format("fosgate: %3d%% %s", (int) (j.getProgress() * 100), j.getMessage()) })
    def geojson = fg.downloadArtifact(job, ".geojson", tmpDir)
    def cfos = getPathClass("c-fos")
    for (obj in PathIO.readObjects(geojson.toPath())) {
        // region pixels -> full-resolution image pixels
        def r = obj.getROI().scale(DOWNSAMPLE, DOWNSAMPLE, 0, 0).translate(request.getX(), request.getY())
        if (roi != null && !roi.contains(r.getCentroidX(), r.getCentroidY()))
            continue  // the region is the annotation's bounding box: keep cells inside the annotation only
        def det = PathObjects.createDetectionObject(r, cfos)
        def ml = det.getMeasurementList()
        obj.getMeasurementList().getNames().each { name -> ml.put(name, obj.getMeasurementList().get(name)) }
        ml.close()
        detections << det
    }
} finally {
    fg.close()
}
if (parent != null) {
    parent.addChildObjects(detections)
} else {
    addObjects(detections)
}
fireHierarchyUpdate()
println "fosgate: ${detections.size()} c-fos positive cells" + (parent != null ? " in ${parent.getName() ?: 'the annotation'}" : "")
