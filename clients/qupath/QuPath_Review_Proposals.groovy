/*
 * fosgate for QuPath 0.5 / 0.6: review fosgate's label proposals of the open image inside QuPath.
 *
 * MODE = "fetch": brings the pending proposals of this image in. Each proposal becomes a rectangle
 *   annotation of class "fosgate tile" named after it (pr_...), holding its cells as detections of class
 *   "fosgate proposal" (one per cell).
 * Then review: delete wrong cells, draw missed ones (any area tool, inside the tile), edit outlines. Set each
 *   tile annotation's class to "fosgate accept" (the cells inside are right, edited or not) or
 *   "fosgate reject" (the proposal is wrong). Tiles left as "fosgate tile" stay pending.
 * MODE = "send": each "fosgate accept" tile goes back as accepted when its cells are unchanged, or as
 *   replaced with your cells (GeoJSON, slide coordinates) when you changed them; "fosgate reject" tiles as
 *   rejected. Your name is stored with every decision. Sent tiles and their cells are removed.
 *
 * The image open in QuPath must be the slide on the server (same pixels): set SLIDE_ID, or leave it empty
 * to use the server's slide with this image's name. Needs the jars of docs/qupath.md in QuPath's
 * extensions folder. Every QuPath call here is listed, with the source file it was checked in, in docs/qupath.md.
 */
import qupath.lib.io.GsonTools
import qupath.lib.io.PathIO
import qupath.lib.objects.PathObjects
import qupath.lib.regions.ImagePlane
import qupath.lib.roi.ROIs

import java.nio.file.Files

def FOSGATE_SERVER = "127.0.0.1:50051"
def REVIEWER = "your name"
def MODE = "fetch"                           // "fetch" or "send"
def SLIDE_ID = ""                            // empty: the server's slide named like this image
def MAX_TILES = 50                           // proposals brought in per fetch
def CLIENT_DIR = "/path/to/fosgate/clients/qupath"   // folder holding FosgateClient.groovy

def FosgateClient = new GroovyClassLoader(getClass().getClassLoader()).parseClass(new File(CLIENT_DIR, "FosgateClient.groovy"))
def tileClass = getPathClass("fosgate tile")
def acceptClass = getPathClass("fosgate accept")
def rejectClass = getPathClass("fosgate reject")
def cellClass = getPathClass("fosgate proposal")

// a fingerprint of a set of cells, to tell an untouched tile from an edited one
def fingerprint = { cells ->
    [cells.size() as double, cells.sum(0d) { it.getROI().getArea() } as double,
     cells.sum(0d) { it.getROI().getCentroidX() } as double, cells.sum(0d) { it.getROI().getCentroidY() } as double]
}
def tileOf = { p -> p.isAnnotation() && (p.getName() ?: "").startsWith("pr_") }
def cellsIn = { tile ->
    def roi = tile.getROI()
    getAllObjects().findAll { o ->
        o != tile && !tileOf(o) && o.getROI() != null && o.getROI().isArea() &&
                (o.isDetection() || o.isAnnotation()) && o.getROI().getBoundsWidth() < roi.getBoundsWidth() &&
                roi.contains(o.getROI().getCentroidX(), o.getROI().getCentroidY())
    }
}

def fg = FosgateClient.newInstance(FOSGATE_SERVER)
try {
    def slideId = SLIDE_ID
    if (!slideId) {
        def name = getProjectEntry()?.getImageName() ?: getCurrentServer().getMetadata().getName()
        def slide = fg.listSlides().find { it.getName() == name }
        if (slide == null) {
            println "fosgate: the server has no slide named '${name}'; set SLIDE_ID at the top of this script."
            return
        }
        slideId = slide.getSlideId()
    }
    if (MODE == "fetch") {
        def skip = getAnnotationObjects().findAll { tileOf(it) }.collect { it.getName() }
        def tmp = Files.createTempDirectory("fosgate-review")
        int added = 0
        long pending = 0
        while (added < MAX_TILES) {
            def t = fg.proposalTile("", slideId, skip)
            pending = t.getPending()
            if (!t.hasProposal()) break
            def p = t.getProposal()
            def r = p.getRegion()
            def tile = PathObjects.createAnnotationObject(ROIs.createRectangleROI(r.getX(), r.getY(), r.getWidth(),
                    r.getHeight(), ImagePlane.getDefaultPlane()), tileClass)
            tile.setName(p.getProposalId())
            def file = tmp.resolve(p.getProposalId() + ".geojson")
            Files.write(file, t.getGeojson().toByteArray())
            def cells = PathIO.readObjects(file).collect { PathObjects.createDetectionObject(it.getROI(), cellClass) }
            def fp = fingerprint(cells)
            def ml = tile.getMeasurementList()
            ["fosgate cells", "fosgate area", "fosgate sum x", "fosgate sum y"].eachWithIndex { k, i -> ml.put(k, fp[i]) }
            addObjects([tile])
            addObjects(cells)  // the hierarchy puts each cell under the tile that holds it
            skip << p.getProposalId()
            added++
        }
        fireHierarchyUpdate()
        println "fosgate: brought in ${added} proposals of ${slideId} (${pending} pending on the server). Reviewer: ${REVIEWER}."
        println "fosgate: set each tile's class to 'fosgate accept' or 'fosgate reject', then run with MODE = \"send\"."
    } else if (MODE == "send") {
        int accepted = 0, replaced = 0, rejected = 0, left = 0
        def done = []
        for (tile in getAnnotationObjects().findAll { tileOf(it) }) {
            def pid = tile.getName()
            def cells = cellsIn(tile)
            if (tile.getPathClass() == rejectClass) {
                fg.review(pid, "reject", REVIEWER)
                rejected++
            } else if (tile.getPathClass() == acceptClass) {
                def ml = tile.getMeasurementList()
                def before = ["fosgate cells", "fosgate area", "fosgate sum x", "fosgate sum y"].collect { ml.get(it) }
                def now = fingerprint(cells)
                boolean same = (0..3).every { i -> Math.abs(before[i] - now[i]) <= 1e-6 * Math.max(1d, Math.abs(before[i])) }
                if (same) {
                    fg.review(pid, "accept", REVIEWER)
                    accepted++
                } else {
                    fg.replaceWithGeoJson(pid, GsonTools.getInstance().toJson(cells), REVIEWER)
                    replaced++
                }
            } else {
                left++
                continue
            }
            done << tile
            done.addAll(cells)
        }
        removeObjects(done, false)
        fireHierarchyUpdate()
        println "fosgate: ${REVIEWER} sent ${accepted} accepted, ${replaced} edited, ${rejected} rejected; ${left} tiles left to review."
    } else {
        println "fosgate: MODE is \"fetch\" or \"send\"."
    }
} catch (Exception e) {
    println "fosgate: ${e.getMessage()}"
} finally {
    fg.close()
}
