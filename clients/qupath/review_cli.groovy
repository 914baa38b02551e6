/*
 * The review calls of the Groovy client core from the command line (what QuPath_Review_Proposals.groovy
 * does inside QuPath, and what tests/test_qupath_groovy.py drives on plain Groovy + grpc-java):
 *   review_cli.groovy HOST:PORT slide NAME                        -> slide=sl_... (the slide with that name)
 *   review_cli.groovy HOST:PORT list SLIDE_ID [STATE]             -> one line per proposal: id state x,y,w,h objects
 *   review_cli.groovy HOST:PORT next SLIDE_ID OUT_DIR [SKIP,...]  -> proposal=, pending=, geojson=, image=
 *   review_cli.groovy HOST:PORT accept|reject PROPOSAL_ID REVIEWER
 *   review_cli.groovy HOST:PORT replace PROPOSAL_ID GEOJSON_FILE REVIEWER
 * Decisions print state= and label=; on failure "error=MESSAGE" and exit 2.
 */
def here = new File(getClass().protectionDomain.codeSource.location.path).parentFile
def FosgateClient = new GroovyClassLoader(getClass().getClassLoader()).parseClass(new File(here, "FosgateClient.groovy"))
if (args.length < 3) {
    System.err.println("usage: review_cli.groovy HOST:PORT slide|list|next|accept|reject|replace ARGS...")
    System.exit(1)
}
def fg = FosgateClient.newInstance(args[0])
int status = 0
try {
    String command = args[1]
    if (command == "slide") {
        def slide = fg.listSlides().find { it.getName() == args[2] }
        if (slide == null) throw new RuntimeException("There is no slide named '${args[2]}' on the server; upload it first.")
        println "slide=${slide.getSlideId()}"
    } else if (command == "list") {
        for (p in fg.listProposals(args[2], args.length > 3 ? args[3] : "pending")) {
            def r = p.getRegion()
            println "${p.getProposalId()}\t${p.getState().name().replace('PROPOSAL_STATE_', '').toLowerCase()}\t" +
                    "${r.getX()},${r.getY()},${r.getWidth()},${r.getHeight()}\t${p.getObjects()}"
        }
    } else if (command == "next") {
        List<String> skip = args.length > 4 ? args[4].split(",").findAll { it } as List<String> : []
        def tile = fg.proposalTile("", args[2], skip)
        println "pending=${tile.getPending()}"
        if (!tile.hasProposal()) {
            println "proposal="
        } else {
            def p = tile.getProposal()
            File out = new File(args[3])
            out.mkdirs()
            File gj = new File(out, p.getProposalId() + ".geojson")
            gj.bytes = tile.getGeojson().toByteArray()
            File img = new File(out, p.getProposalId() + ".tif")
            img.bytes = tile.getImageTiff().toByteArray()
            def r = p.getRegion()
            println "proposal=${p.getProposalId()}"
            println "region=${r.getX()},${r.getY()},${r.getWidth()},${r.getHeight()}"
            println "objects=${p.getObjects()}"
            println "geojson=${gj.getAbsolutePath()}"
            println "image=${img.getAbsolutePath()}"
        }
    } else if (command in ["accept", "reject", "replace"]) {
        def r = command == "replace" ? fg.replaceWithGeoJson(args[2], new File(args[3]).getText("UTF-8"), args[4])
                                     : fg.review(args[2], command, args[3])
        println "state=${r.getProposal().getState().name().replace('PROPOSAL_STATE_', '').toLowerCase()}"
        println "label=${r.hasLabel() ? r.getLabel().getLabelId() : ''}"
        println "objects=${r.hasLabel() ? r.getLabel().getObjects() : 0}"
    } else {
        throw new RuntimeException("Unknown command '${command}'.")
    }
} catch (Exception e) {
    println "error=${e.getMessage()}"
    status = 2
} finally {
    fg.close()
}
System.exit(status)
