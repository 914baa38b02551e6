/*
 * fosgate for QuPath 0.5 / 0.6: count c-fos detections per annotation (brain region). A detection
 * counts in an annotation when its centroid lies inside it. Adds the measurements "fosgate c-fos
 * cells" and "fosgate c-fos cells per mm^2" to each annotation and writes a CSV next to the project.
 */
def CLASS_NAME = "c-fos"
def OUT = buildFilePath(PROJECT_BASE_DIR ?: System.getProperty("user.home"), "fosgate-region-counts.csv")

def cal = getCurrentServer().getPixelCalibration()
def umPerPx2 = cal.hasPixelSizeMicrons() ? cal.getPixelWidthMicrons() * cal.getPixelHeightMicrons() : Double.NaN
def detections = getDetectionObjects().findAll { it.getPathClass() == getPathClass(CLASS_NAME) }
def rows = ["image,annotation,cells,area_px,cells_per_mm2"]
def imageName = getProjectEntry()?.getImageName() ?: getCurrentServer().getMetadata().getName()
for (annotation in getAnnotationObjects()) {
    def roi = annotation.getROI()
    int n = detections.count { roi.contains(it.getROI().getCentroidX(), it.getROI().getCentroidY()) } as int
    double areaPx = roi.getArea()
    double perMm2 = Double.isNaN(umPerPx2) ? Double.NaN : n / (areaPx * umPerPx2 / 1e6)
    annotation.getMeasurementList().put("fosgate c-fos cells", n)
    annotation.getMeasurementList().put("fosgate c-fos cells per mm^2", perMm2)
    rows << [imageName, annotation.getName() ?: annotation.getPathClass()?.toString() ?: "annotation", n,
             String.format("%.0f", areaPx), String.format("%.3f", perMm2)].join(",")
}
new File(OUT).text = rows.join("\n") + "\n"
fireHierarchyUpdate()
println rows.join("\n")
println "fosgate: saved ${OUT}"
