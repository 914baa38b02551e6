/*
 * Command-line use of the Groovy client core (and its test): upload an image, predict, follow the
 * job's progress, fetch the GeoJSON detections.
 *   groovy -cp fosgate-v1-stubs.jar:<grpc jars> fosgate_cli.groovy HOST:PORT MODEL_ID IMAGE OUT_DIR [REGIONS.geojson]
 * Prints progress lines, then "count=N" and "geojson=PATH"; with a regions GeoJSON also counts the cells per
 * region on the server and prints "regions_csv=PATH"; on failure "error=MESSAGE" and exit 2.
 */
def here = new File(getClass().protectionDomain.codeSource.location.path).parentFile
def FosgateClient = new GroovyClassLoader(getClass().getClassLoader()).parseClass(new File(here, "FosgateClient.groovy"))
if (args.length != 4 && args.length != 5) {
    System.err.println("usage: fosgate_cli.groovy HOST:PORT MODEL_ID IMAGE OUT_DIR [REGIONS.geojson]")
    System.exit(1)
}
def fg = FosgateClient.newInstance(args[0])
try {
    def model = fg.getModel(args[1])
    def slide = fg.uploadFile(new File(args[2]))
    println "uploaded=${slide.getSlideId()} ${slide.getWidth()}x${slide.getHeight()}"
    def job = fg.predict(slide.getSlideId(), model.getModelId(), [:])
    job = fg.waitFor(job.getJobId(), { j -> println "progress=${(int) (j.getProgress() * 100)} ${j.getMessage()}" })
    def geojson = fg.downloadArtifact(job, ".geojson", new File(args[3]))
    println "count=${(int) job.getMetricsMap().get('count')}"
    println "geojson=${geojson.getAbsolutePath()}"
    if (args.length == 5) {
        def counting = fg.waitFor(fg.countRegions(job.getJobId(), new File(args[4]).getText("UTF-8")).getJobId())
        def table = fg.downloadArtifact(counting, ".regions.csv", new File(args[3]))
        println "regions_csv=${table.getAbsolutePath()}"
    }
} catch (Exception e) {
    println "error=${e.getMessage()}"
    System.exit(2)
} finally {
    fg.close()
}
