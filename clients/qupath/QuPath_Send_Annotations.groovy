/*
 * fosgate for QuPath 0.5 / 0.6: send the cells you reviewed inside the selected annotation (its child
 * annotations or detections: accepted, edited or drawn) to fosgate as a reviewed label of that region.
 * The region is exported at DOWNSAMPLE, uploaded, and the cells are sent as GeoJSON in its pixels.
 */
import qupath.lib.io.GsonTools
import qupath.lib.objects.PathObjectTools
import qupath.lib.regions.RegionRequest

import java.awt.geom.AffineTransform

def FOSGATE_SERVER = "127.0.0.1:50051"
def REVIEWER = "your name"
def DOWNSAMPLE = 1.0
def CLIENT_DIR = "/path/to/fosgate/clients/qupath"

def FosgateClient = new GroovyClassLoader(getClass().getClassLoader()).parseClass(new File(CLIENT_DIR, "FosgateClient.groovy"))
def parent = getSelectedObject()
if (parent == null || !parent.isAnnotation()) {
    println "fosgate: select the annotation (region) whose cells you reviewed"
    return
}
def imageServer = getCurrentServer()
def request = RegionRequest.createInstance(imageServer.getPath(), DOWNSAMPLE, parent.getROI())
def cells = parent.getChildObjects().findAll { it.getROI() != null && it.getROI().isArea() }
// full-resolution pixels -> region pixels
def transform = new AffineTransform()
transform.scale(1.0 / DOWNSAMPLE, 1.0 / DOWNSAMPLE)
transform.translate(-request.getX(), -request.getY())
def moved = cells.collect { PathObjectTools.transformObject(it, transform, true) }
def geojson = GsonTools.getInstance().toJson(moved)

def tmpDir = File.createTempDir("fosgate-", "")
def tile = new File(tmpDir, "region.tif")
writeImageRegion(imageServer, request, tile.getAbsolutePath())
def fg = FosgateClient.newInstance(FOSGATE_SERVER)
try {
    def slide = fg.uploadFile(tile)
    def label = fg.addLabelGeoJson(slide.getSlideId(), geojson, null, REVIEWER)
    println "fosgate: stored ${label.getObjects()} cells as label ${label.getLabelId()}"
} finally {
    fg.close()
}
