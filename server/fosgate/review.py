"""Labels and their review: storing labels, proposals and review decisions; choosing tiles to label.

Invariants
- A label file is complete on disk (written, fsynced, renamed) before its row exists.
- Review decisions are a state machine, decided atomically in one SQLite transaction
  (``Store.decide_proposal``)::

      pending --accept--> accepted      pending --reject--> rejected      pending --replace--> replaced
      accepted | replaced | rejected --replace(replaces_label_id)--> replaced (a new label version; see below)

  Accepting or rejecting a proposal that is no longer pending is FAILED_PRECONDITION: a decision is
  final, so two reviewers (or a retried request) never store two labels. In particular, *reject after
  accept is refused*; to drop an accepted label from training, delete the label (``DeleteLabel``).
- A replacement of an already decided proposal is an explicit, versioned replace: the request names the
  label it replaces (``replaces_label_id``: the proposal's current label, or the proposal id when it has
  none); the new label's parent is that label (version + 1) and the earlier version stays. Every
  decision is compare-and-set on the proposal's state and label: if another decision landed in between,
  this one is refused, so concurrent decisions on one proposal always leave exactly one new label.
- Every text a client gives (reviewer, ids) is capped (``fosgate.specs``) before it is stored.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fosgate.config import ServerConfig
from fosgate.errors import InvalidInput, NotFound, Precondition, TooLarge
from fosgate.ingest import SlideIngest
from fosgate.specs import MAX_REVIEWER_CHARS, check_id, check_region, check_text
from fosgate.store.db import LabelRow, ProposalRow, Store, fsync_replace, new_id, now

LABEL_SOURCES = ("human", "classical", "sam", "model", "import")
DECISIONS = ("accept", "reject", "replace")


def check_reviewer(reviewer: str) -> str:
    return check_text(reviewer or "", "The reviewer name", MAX_REVIEWER_CHARS)


class Labels:
    """Labels, proposals, review decisions and tile selection."""

    def __init__(self, config: ServerConfig, store: Store, slides: SlideIngest):
        self.config = config
        self.store = store
        self.slides = slides
        self.data = slides.data

    # ------------------------------------------------------------------ labels
    def add_label(self, slide_id: str, mask_slide_id: str, region: tuple[int, int, int, int] | None,
                  source: str, reviewer: str, parent_id: str = "", roi_zip: bytes = b"",
                  geojson: bytes = b"") -> LabelRow:
        """Store a mask as an accepted label for a rectangle of an image. The mask may be binary
        (0/1, 0/255) or an instance-label image (any non-zero pixel is foreground), or be given as an
        ImageJ ROI set (region coordinates) or QuPath GeoJSON (slide coordinates)."""
        from fosgate.core.edits import labels_from_geojson, labels_from_roi_zip

        if source not in LABEL_SOURCES:
            raise InvalidInput(f"Unknown label source '{source}'; use one of {', '.join(LABEL_SOURCES)}.")
        check_id(slide_id, "slide")
        check_id(mask_slide_id, "mask slide")
        check_id(parent_id, "parent")
        reviewer = check_reviewer(reviewer)
        image = self.store.get_slide(slide_id)
        h, w = image.info["height"], image.info["width"]
        x, y, rw, rh = region if region and region[2] and region[3] else (0, 0, w, h)
        check_region((x, y, rw, rh), w, h, "label region")
        if rw * rh > self.config.max_label_pixels:
            raise TooLarge(f"The labelled region is {rw}x{rh} px; labels are stored per tile or image up to "
                           f"{self.config.max_label_pixels:,} pixels. Split it into smaller regions.")
        if not mask_slide_id:
            if roi_zip:
                labels = labels_from_roi_zip(roi_zip, (rh, rw))
            elif geojson:
                labels = labels_from_geojson(geojson, (rh, rw), offset=(x, y))
            else:
                raise InvalidInput("Give the label as a mask image, an ImageJ ROI set or QuPath GeoJSON.")
            return self.store.add_label(self.make_label(slide_id, labels, (x, y, rw, rh), source, reviewer,
                                                        parent_id))
        mask_row = self.store.get_slide(mask_slide_id)
        mh, mw = mask_row.info["height"], mask_row.info["width"]
        if (mw, mh) != (rw, rh):
            raise InvalidInput(f"The mask is {mw}x{mh} px but the labelled region of the image is {rw}x{rh} px; "
                               "they must match.")
        with self.slides.open_slide(mask_row) as ms:
            mask = ms.read(0, mh, 0, mw)
        row = self.make_label(slide_id, mask_to_labels(mask), (x, y, rw, rh), source, reviewer, parent_id)
        return self.store.add_label(row)

    def make_label(self, slide_id: str, labels: np.ndarray, region: tuple[int, int, int, int], source: str,
                   reviewer: str, parent_id: str = "") -> LabelRow:
        """Write ``labels`` (uint32 instances) durably and return the row to insert."""
        import tifffile

        x, y, rw, rh = region
        label_id = new_id("lb")
        self.data.check_quota()
        tmp = self.store.tmp_path(".tif")
        try:
            tifffile.imwrite(tmp, labels.astype(np.uint32), compression="zlib")
            final = self.store.label_path(label_id)
            fsync_replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        version = 1
        if parent_id:
            try:
                version = self.store.get_label(parent_id).version + 1
            except NotFound:
                version = 1
        objects = int(np.count_nonzero(np.unique(labels)))
        return LabelRow(label_id, slide_id, str(final), int(x), int(y), int(rw), int(rh), source, reviewer or "",
                        now(), parent_id or "", version, int(np.count_nonzero(labels)), objects)

    def delete_label(self, label_id: str) -> LabelRow:
        """Remove a label from the training set (its file too). A proposal it came from keeps its
        decision and loses the link; models trained on it keep it in their provenance list."""
        check_id(label_id, "label")
        return self.store.delete_label(label_id)

    # ------------------------------------------------------------------ proposals
    def add_proposal(self, slide_id: str, labels: np.ndarray, region: tuple[int, int, int, int], source: str,
                     job_id: str, uncertainty: float = 0.0) -> ProposalRow:
        import tifffile

        pid = new_id("pr")
        tmp = self.store.tmp_path(".tif")
        try:
            tifffile.imwrite(tmp, labels.astype(np.uint32), compression="zlib")
            final = self.store.proposal_path(pid)
            fsync_replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        x, y, w, h = region
        return self.store.add_proposal(ProposalRow(pid, slide_id, str(final), x, y, w, h, source, "pending",
                                                   int(np.count_nonzero(np.unique(labels))), now(), job_id,
                                                   uncertainty=float(uncertainty)))

    def delete_proposal(self, proposal_id: str) -> ProposalRow:
        """Remove a proposal (pending or decided) and its file; a label made from it stays."""
        check_id(proposal_id, "proposal")
        return self.store.delete_proposal(proposal_id)

    def review_proposal(self, proposal_id: str, decision: str, reviewer: str = "", mask_slide_id: str = "",
                        roi_zip: bytes = b"", geojson: bytes = b"", coordinates: str = "",
                        replaces_label_id: str = "") -> tuple[ProposalRow, LabelRow | None]:
        """Accept, reject or replace a proposal (the state machine in the module docstring)."""
        import tifffile

        from fosgate.core.edits import labels_from_geojson, labels_from_roi_zip

        if decision not in DECISIONS:
            raise InvalidInput("A review decision is accept, reject or replace.")
        check_id(proposal_id, "proposal")
        check_id(mask_slide_id, "mask slide")
        reviewer = check_reviewer(reviewer)
        prop = self.store.get_proposal(proposal_id)
        check_id(replaces_label_id, "replaced label")
        if decision in ("accept", "reject") and prop.state != "pending":
            raise Precondition(_decided(prop, decision))
        if decision == "replace" and prop.state != "pending":
            current = prop.label_id or prop.id
            if replaces_label_id != current:
                raise Precondition(f"{_decided(prop, decision)} To store a new version anyway, send the replacement "
                                   f"with replaces_label_id={current} (fosgate review replace --replaces {current}).")
        elif decision == "replace" and replaces_label_id:
            raise Precondition(f"Proposal {prop.id} is still pending, so there is no label '{replaces_label_id}' to "
                               "replace; send the replacement without replaces_label_id.")
        region = (prop.x, prop.y, prop.width, prop.height)
        shape = (prop.height, prop.width)
        if decision == "reject":
            return self.store.decide_proposal(proposal_id, "rejected", reviewer, None, expect=prop), None
        if decision == "accept":
            labels = tifffile.imread(prop.path)
            row = self.make_label(prop.slide_id, labels, region, prop.source, reviewer, parent_id=prop.id)
            return self._commit(prop, "accepted", reviewer, row)
        if mask_slide_id:
            mask_row = self.store.get_slide(mask_slide_id)
            if (mask_row.info["height"], mask_row.info["width"]) != shape:
                raise InvalidInput(f"The edited mask is {mask_row.info['width']}x{mask_row.info['height']} px but the "
                                   f"proposal is {prop.width}x{prop.height} px.")
            with self.slides.open_slide(mask_row) as ms:
                labels = mask_to_labels(ms.read(0, prop.height, 0, prop.width))
        elif roi_zip:
            offset = (prop.x, prop.y) if coordinates == "slide" else (0, 0)
            labels = labels_from_roi_zip(roi_zip, shape, offset)
        elif geojson:
            offset = (0, 0) if coordinates == "tile" else (prop.x, prop.y)
            labels = labels_from_geojson(geojson, shape, offset)
        else:
            raise InvalidInput("A replacement needs the edited mask, ROI set or GeoJSON.")
        parent = prop.label_id or prop.id
        row = self.make_label(prop.slide_id, labels, region, "human", reviewer, parent_id=parent)
        return self._commit(prop, "replaced", reviewer, row)

    def _commit(self, prop: ProposalRow, state: str, reviewer: str, row: LabelRow) -> tuple[ProposalRow, LabelRow]:
        """Record the decision with its label in one transaction; the label file goes if it loses."""
        try:
            return self.store.decide_proposal(prop.id, state, reviewer, row, expect=prop), row
        except BaseException:
            Path(row.path).unlink(missing_ok=True)
            raise

    # ------------------------------------------------------------------ clusterings and tile selection
    def clustering_tiles(self, clustering_id: str) -> list[dict]:
        from fosgate.core.clustering import read_cluster_csv

        check_id(clustering_id, "clustering")
        return read_cluster_csv(Path(self.store.get_clustering(clustering_id).path))

    def select_tiles(self, clustering_id: str, n: int, strategy: str, exclude: list[int], model_id: str = "",
                     seed: int = 0, skip_labelled: bool = False) -> list[dict]:
        """Tiles to label next (see ``fosgate.core.selection``)."""
        from fosgate.core.selection import STRATEGIES, select_tiles

        if strategy not in STRATEGIES:
            raise InvalidInput(f"Unknown selection strategy '{strategy}'; use one of {', '.join(STRATEGIES)}.")
        if n <= 0:
            raise InvalidInput("Ask for at least one tile (n >= 1).")
        if seed < 0:
            raise InvalidInput(f"The seed must be 0 or more (got {seed}).")
        check_id(model_id, "model")
        row = self.store.get_clustering(clustering_id)
        tiles = self.clustering_tiles(clustering_id)
        clusters = np.array([t["cluster"] for t in tiles])
        eligible = None
        if skip_labelled:
            taken = [(lb.x, lb.y, lb.width, lb.height) for lb in self.store.list_labels(row.slide_id)]
            taken += [(p.x, p.y, p.width, p.height) for p in self.store.list_proposals(row.slide_id)
                      if p.state == "pending"]
            eligible = np.array([not any(_covers(r, t) for r in taken) for t in tiles], bool)
        uncertainty = None
        if strategy == "active":
            if not model_id:
                raise InvalidInput("The active strategy needs a model (--model) whose uncertainty guides the choice.")
            uncertainty = self._tile_uncertainty(row, tiles, model_id)
        picked = select_tiles(clusters, n, strategy, exclude=exclude, uncertainty=uncertainty, eligible=eligible,
                              seed=seed)
        out = [tiles[i] for i in picked]
        if uncertainty is not None:
            for t, i in zip(out, picked, strict=True):
                t["uncertainty"] = float(uncertainty[i])
        return out

    def _tile_uncertainty(self, clustering, tiles: list[dict], model_id: str) -> np.ndarray:
        from fosgate.core.autolabel import tile_uncertainty
        from fosgate.core.model import FosgateModel, check_segments
        from fosgate.core.tiling import plan_crop_tiles

        model_row = self.store.get_model(model_id)
        check_segments(model_row.meta, model_id)
        slide_row = self.store.get_slide(clustering.slide_id)
        model = FosgateModel.load(model_row.path)
        with self.slides.open_slide(slide_row) as slide:
            info = slide.info
            if info.channels != model.in_channels:
                raise Precondition(f"Model '{model_id}' expects {model.in_channels}-channel images; this slide has "
                                   f"{info.channels}.")
            plan = plan_crop_tiles(info.height, info.width, clustering.tile_size,
                                   _margin_of(tiles, clustering.tile_size))
            by_pos = {(t.x, t.y): t for t in plan}
            crop_tiles = [by_pos.get((t["x"], t["y"])) for t in tiles]
            if any(t is None for t in crop_tiles):  # clustering of a region: fall back to the tiles themselves
                from fosgate.core.tiling import CropTile

                crop_tiles = [CropTile(0, 0, t["y"], t["x"], t["height"], t["width"], t["y"], t["x"], t["height"],
                                       t["width"]) for t in tiles]
            return tile_uncertainty(model, slide, crop_tiles)


def _decided(prop: ProposalRow, decision: str) -> str:
    who = f" by {prop.reviewer}" if prop.reviewer else ""
    when = f" on {prop.decided}" if prop.decided else ""
    hint = ("To drop its label from training, delete the label (fosgate review delete-label "
            f"{prop.label_id})." if prop.label_id and decision == "reject" else
            "To correct it, replace it with an edited mask, naming the label it replaces (a new label version).")
    return f"Proposal {prop.id} was already {prop.state}{who}{when}; a decision is final. {hint}"


def mask_to_labels(mask: np.ndarray) -> np.ndarray:
    """uint32 instances from a mask: instance labels are kept, a binary mask gets 4-connected components."""
    from scipy import ndimage

    mask = mask.max(axis=-1) if mask.ndim == 3 else mask
    values = np.unique(mask)
    if values.size > 2 or (values.size == 2 and values[0] != 0):
        return mask.astype(np.uint32)
    labels, _ = ndimage.label(mask > 0, structure=ndimage.generate_binary_structure(2, 1))
    return labels.astype(np.uint32)


def _covers(r: tuple[int, int, int, int], t: dict) -> bool:
    """Whether region ``r`` (x, y, w, h) holds at least half of tile ``t``. Clustering tiles overlap their
    neighbours by the margin, so a labelled tile touches its eight neighbours: touching must not count
    as labelled, or ``skip_labelled`` would hide the neighbours of every labelled tile."""
    x, y, w, h = r
    dx = min(t["x"] + t["width"], x + w) - max(t["x"], x)
    dy = min(t["y"] + t["height"], y + h) - max(t["y"], y)
    return dx > 0 and dy > 0 and 2 * dx * dy >= t["width"] * t["height"]


def _margin_of(tiles: list[dict], tile: int) -> int:
    xs = sorted({t["x"] for t in tiles})
    if len(xs) < 2:
        return 0
    return max(0, (tile - (xs[1] - xs[0])) // 2)
