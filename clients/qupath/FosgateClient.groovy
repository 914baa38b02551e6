/*
 * fosgate gRPC client core for Groovy: plain grpc-java, no QuPath classes, no Java-style lambdas,
 * so it runs on Debian's Groovy 2.4 and on QuPath 0.5/0.6 (Groovy 4) alike.
 *
 * Needs on the classpath: fosgate-v1-stubs.jar (clients/qupath/build_stubs.sh) and grpc-java with its
 * dependencies (see docs/qupath.md for the exact jars). Load it from a script with:
 *
 *   def FosgateClient = new GroovyClassLoader(getClass().getClassLoader()).parseClass(new File(".../FosgateClient.groovy"))
 *   def fg = FosgateClient.newInstance("127.0.0.1:50051")
 *   def slide = fg.uploadFile(new File("tile.tif"))
 *   def job = fg.predict(slide.getSlideId(), "md_...", [:])
 *   job = fg.waitFor(job.getJobId(), { j -> println "${(int)(j.getProgress() * 100)}% ${j.getMessage()}" })
 *   File geojson = fg.downloadArtifact(job, ".geojson", new File("out"))
 *   fg.close()
 *
 * Every failure is thrown as a FosgateException whose message is meant for the user.
 */

import com.google.protobuf.ByteString
import io.grpc.ManagedChannel
import io.grpc.ManagedChannelBuilder
import io.grpc.Status
import io.grpc.StatusRuntimeException
import io.grpc.stub.StreamObserver
import org.fosgate.v1.*

import java.security.MessageDigest
import java.util.concurrent.CountDownLatch
import java.util.concurrent.TimeUnit

class FosgateClient implements Closeable {
    static final int CHUNK = 1 << 20
    final String address
    final ManagedChannel channel
    long timeoutSeconds = 120

    FosgateClient(String address) {
        this.address = address
        this.channel = ManagedChannelBuilder.forTarget(address).usePlaintext()
                .maxInboundMessageSize(16 << 20).build()
    }

    void close() { channel.shutdownNow(); channel.awaitTermination(5, TimeUnit.SECONDS) }

    private FosgateException explain(Throwable t) {
        if (t instanceof FosgateException) return (FosgateException) t
        Status s = Status.fromThrowable(t)
        String code = s.getCode().name()
        if (s.getCode() == Status.Code.UNAVAILABLE)
            return new FosgateException("Cannot reach the fosgate server at ${address}. Is it running? Start it with 'fosgate serve'.", code)
        if (s.getCode() == Status.Code.DEADLINE_EXCEEDED)
            return new FosgateException("The fosgate server at ${address} did not answer in time.", code)
        return new FosgateException(s.getDescription() ?: code, code)
    }

    private <T> T call(Closure<T> body) {
        try { return body.call() } catch (StatusRuntimeException e) { throw explain(e) }
    }

    def slides() { SlideServiceGrpc.newBlockingStub(channel).withDeadlineAfter(timeoutSeconds, TimeUnit.SECONDS) }
    def labels() { LabelServiceGrpc.newBlockingStub(channel).withDeadlineAfter(timeoutSeconds, TimeUnit.SECONDS) }
    def models() { ModelServiceGrpc.newBlockingStub(channel).withDeadlineAfter(timeoutSeconds, TimeUnit.SECONDS) }
    def labelling() { LabellingServiceGrpc.newBlockingStub(channel).withDeadlineAfter(timeoutSeconds, TimeUnit.SECONDS) }
    def predictions() { PredictionServiceGrpc.newBlockingStub(channel).withDeadlineAfter(timeoutSeconds, TimeUnit.SECONDS) }
    def jobs() { JobServiceGrpc.newBlockingStub(channel) }

    List<Model> listModels() { call { models().listModels(ListModelsRequest.newBuilder().build()).getModelsList() } }

    Model getModel(String modelId) {
        call { models().getModel(GetModelRequest.newBuilder().setModelId(modelId).build()) }
    }

    /** Stream a file to the server in 1 MiB chunks with its SHA-256; returns the Slide. */
    Slide uploadFile(File file, String role = "image") {
        if (!file.isFile()) throw new FosgateException("There is no file ${file}.", "INVALID_ARGUMENT")
        MessageDigest md = MessageDigest.getInstance("SHA-256")
        file.withInputStream { ins ->
            byte[] buf = new byte[CHUNK]
            int n
            while ((n = ins.read(buf)) > 0) md.update(buf, 0, n)
        }
        String sha = md.digest().collect { String.format("%02x", it & 0xff) }.join("")
        final CountDownLatch done = new CountDownLatch(1)
        final Object[] box = new Object[2]
        StreamObserver<Slide> responses = [
                onNext     : { Slide s -> box[0] = s },
                onError    : { Throwable t -> box[1] = t; done.countDown() },
                onCompleted: { done.countDown() }
        ] as StreamObserver<Slide>
        StreamObserver<UploadSlideRequest> requests = SlideServiceGrpc.newStub(channel)
                .withDeadlineAfter(Math.max(timeoutSeconds, (long) (file.length() / 5e6)), TimeUnit.SECONDS)
                .uploadSlide(responses)
        SlideRole slideRole = role == "mask" ? SlideRole.SLIDE_ROLE_MASK : SlideRole.SLIDE_ROLE_IMAGE
        requests.onNext(UploadSlideRequest.newBuilder().setHeader(UploadSlideHeader.newBuilder()
                .setName(file.getName()).setSizeBytes(file.length()).setSha256(sha).setRole(slideRole)).build())
        file.withInputStream { ins ->
            byte[] buf = new byte[CHUNK]
            int n
            while ((n = ins.read(buf)) > 0) {
                requests.onNext(UploadSlideRequest.newBuilder().setChunk(ByteString.copyFrom(buf, 0, n)).build())
            }
        }
        requests.onCompleted()
        done.await()
        if (box[1] != null) throw explain((Throwable) box[1])
        return (Slide) box[0]
    }

    /** Start a prediction job. options: tileSize, halo, threshold, minSize, splitTouching, stem, region [x, y, w, h]. */
    Job predict(String slideId, String modelId, Map options) {
        PredictRequest.Builder b = PredictRequest.newBuilder().setSlideId(slideId).setModelId(modelId)
                .setThreshold((options.threshold ?: 0.0) as double).setMinSize((options.minSize ?: 10) as int)
                .setTileSize((options.tileSize ?: 0) as int).setHalo((options.halo ?: 0) as int)
                .setSplitTouching((options.splitTouching ?: false) as boolean).setStem((options.stem ?: "") as String)
        if (options.region) {
            def r = options.region
            b.setRegion(Rect.newBuilder().setX(r[0] as int).setY(r[1] as int).setWidth(r[2] as int).setHeight(r[3] as int))
        }
        return call { predictions().predict(b.build()) }
    }

    /** Follow a job with WatchJob until it ends; onEvent gets each Job update. Throws if it did not succeed. */
    Job waitFor(String jobId, Closure onEvent = null) {
        Job last = null
        try {
            Iterator<JobEvent> events = jobs().watchJob(WatchJobRequest.newBuilder().setJobId(jobId).build())
            while (events.hasNext()) {
                last = events.next().getJob()
                if (onEvent != null) onEvent.call(last)
            }
        } catch (StatusRuntimeException e) {
            throw explain(e)
        }
        if (last == null || !(last.getState() in [JobState.JOB_STATE_SUCCEEDED, JobState.JOB_STATE_FAILED, JobState.JOB_STATE_CANCELLED]))
            last = call { jobs().getJob(GetJobRequest.newBuilder().setJobId(jobId).build()) }
        if (last.getState() != JobState.JOB_STATE_SUCCEEDED)
            throw new FosgateException("Job ${jobId} ${last.getState().name().replace('JOB_STATE_', '').toLowerCase()}: ${last.getMessage()}", "FAILED_PRECONDITION")
        return last
    }

    /** Download the job artifact whose name ends with suffix (e.g. ".geojson") into dir; checks SHA-256. */
    File downloadArtifact(Job job, String suffix, File dir) {
        Artifact a = job.getArtifactsList().find { it.getName().endsWith(suffix) }
        if (a == null) throw new FosgateException("Job ${job.getJobId()} has no ${suffix} output.", "NOT_FOUND")
        dir.mkdirs()
        File target = new File(dir, a.getName())
        MessageDigest md = MessageDigest.getInstance("SHA-256")
        try {
            target.withOutputStream { out ->
                Iterator<ArtifactChunk> chunks = jobs().withDeadlineAfter(Math.max(timeoutSeconds, (long) (a.getSizeBytes() / 5e6)), TimeUnit.SECONDS)
                        .downloadArtifact(DownloadArtifactRequest.newBuilder().setArtifactId(a.getArtifactId()).build())
                while (chunks.hasNext()) {
                    byte[] data = chunks.next().getData().toByteArray()
                    md.update(data)
                    out.write(data)
                }
            }
        } catch (StatusRuntimeException e) {
            throw explain(e)
        }
        String sha = md.digest().collect { String.format("%02x", it & 0xff) }.join("")
        if (a.getSha256() && sha != a.getSha256()) throw new FosgateException("The download of ${a.getName()} arrived damaged; try again.", "DATA_LOSS")
        return target
    }

    /**
     * Count the cells of a finished prediction job per brain region on the server. regions: QuPath GeoJSON text
     * of the region annotations (slide pixels; names and, by containment or ID / Parent ID measurements, the
     * hierarchy). Returns the count_regions job; download its ".regions.csv" with downloadArtifact.
     */
    Job countRegions(String predictionJobId, String regionsGeoJson, double pixelSizeMicrons = 0.0d) {
        long size = regionsGeoJson.getBytes("UTF-8").length
        if (size > (16 << 20) - (64 << 10))
            throw new FosgateException(String.format("The regions GeoJSON is %.1f MB; one request carries at most 16 MB.",
                    size / 1048576.0d), "RESOURCE_EXHAUSTED")
        RegionMap regions = RegionMap.newBuilder().setGeojson(ByteString.copyFromUtf8(regionsGeoJson))
                .setPixelSizeUm(pixelSizeMicrons).build()
        return call { predictions().countRegions(CountRegionsRequest.newBuilder().setJobId(predictionJobId)
                .setRegions(regions).build()) }
    }

    /** Store QuPath annotations (GeoJSON text in slide coordinates) as a reviewed label of a rectangle. */
    Label addLabelGeoJson(String slideId, String geojson, List region, String reviewer) {
        long size = geojson.getBytes("UTF-8").length
        if (size > (16 << 20) - (64 << 10))
            throw new FosgateException(String.format("The GeoJSON is %.1f MB; one request carries at most 16 MB. " +
                    "Send a smaller region.", size / 1048576.0d), "RESOURCE_EXHAUSTED")
        AddLabelRequest.Builder b = AddLabelRequest.newBuilder().setSlideId(slideId)
                .setGeojson(ByteString.copyFromUtf8(geojson)).setSource(LabelSource.LABEL_SOURCE_HUMAN)
                .setReviewer(reviewer ?: "")
        if (region) b.setRegion(Rect.newBuilder().setX(region[0] as int).setY(region[1] as int)
                .setWidth(region[2] as int).setHeight(region[3] as int))
        return call { labels().addLabel(b.build()) }
    }

    // ------------------------------------------------------------------ reviewing proposals

    /** The slides on the server (to find the one that is open in QuPath by its name). */
    List<Slide> listSlides() { call { slides().listSlides(ListSlidesRequest.newBuilder().build()).getSlidesList() } }

    /** The proposals of a slide; state: "pending", "accepted", "rejected", "replaced" or "" for all. */
    List<Proposal> listProposals(String slideId, String state = "pending") {
        ProposalState st = state ? ProposalState.valueOf("PROPOSAL_STATE_" + state.toUpperCase()) : ProposalState.PROPOSAL_STATE_UNSPECIFIED
        call { labelling().listProposals(ListProposalsRequest.newBuilder().setSlideId(slideId ?: "").setState(st).build()).getProposalsList() }
    }

    /** One proposal's tile (TIFF bytes), its cells as GeoJSON in slide coordinates and ImageJ ROIs, and the
     *  pending count. Without proposalId: the next pending proposal of slideId not in skip; then
     *  hasProposal() is false when none is left. */
    ProposalTile proposalTile(String proposalId, String slideId = "", List<String> skip = []) {
        call {
            labelling().getProposalTile(GetProposalTileRequest.newBuilder().setProposalId(proposalId ?: "")
                    .setSlideId(slideId ?: "").addAllSkip(skip ?: []).build())
        }
    }

    /** Accept or reject a proposal (decision "accept" / "reject"), with the reviewer's name. */
    ReviewResponse review(String proposalId, String decision, String reviewer) {
        ReviewDecision d = decision == "accept" ? ReviewDecision.REVIEW_DECISION_ACCEPT :
                decision == "reject" ? ReviewDecision.REVIEW_DECISION_REJECT : null
        if (d == null) throw new FosgateException("A review decision is accept, reject or replace (with the edited cells).", "INVALID_ARGUMENT")
        call { labelling().reviewProposal(ReviewRequest.newBuilder().setProposalId(proposalId).setDecision(d)
                .setReviewer(reviewer ?: "").build()) }
    }

    /** Replace a proposal with the reviewer's cells: GeoJSON (a FeatureCollection or a list of features,
     *  as QuPath writes them) in slide coordinates. */
    ReviewResponse replaceWithGeoJson(String proposalId, String geojson, String reviewer) {
        long size = geojson.getBytes("UTF-8").length
        if (size > (16 << 20) - (64 << 10))
            throw new FosgateException(String.format("The GeoJSON is %.1f MB; one request carries at most 16 MB.", size / 1048576.0d), "RESOURCE_EXHAUSTED")
        call { labelling().reviewProposal(ReviewRequest.newBuilder().setProposalId(proposalId)
                .setDecision(ReviewDecision.REVIEW_DECISION_REPLACE).setReviewer(reviewer ?: "")
                .setGeojson(ByteString.copyFromUtf8(geojson)).setCoordinates(EditCoordinates.EDIT_COORDINATES_SLIDE).build()) }
    }
}

/** A failed call; the message is meant for the user, code is the gRPC status name. */
class FosgateException extends RuntimeException {
    String code
    FosgateException(String message, String code) { super(message); this.code = code }
}
