from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SlideRole(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SLIDE_ROLE_UNSPECIFIED: _ClassVar[SlideRole]
    SLIDE_ROLE_IMAGE: _ClassVar[SlideRole]
    SLIDE_ROLE_MASK: _ClassVar[SlideRole]

class LabelSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LABEL_SOURCE_UNSPECIFIED: _ClassVar[LabelSource]
    LABEL_SOURCE_HUMAN: _ClassVar[LabelSource]
    LABEL_SOURCE_CLASSICAL: _ClassVar[LabelSource]
    LABEL_SOURCE_SAM: _ClassVar[LabelSource]
    LABEL_SOURCE_MODEL: _ClassVar[LabelSource]
    LABEL_SOURCE_IMPORT: _ClassVar[LabelSource]

class SelectStrategy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SELECT_STRATEGY_UNSPECIFIED: _ClassVar[SelectStrategy]
    SELECT_STRATEGY_BALANCED: _ClassVar[SelectStrategy]
    SELECT_STRATEGY_PROPORTIONAL: _ClassVar[SelectStrategy]
    SELECT_STRATEGY_RANDOM: _ClassVar[SelectStrategy]
    SELECT_STRATEGY_ACTIVE: _ClassVar[SelectStrategy]

class AutoLabelMethod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AUTO_LABEL_METHOD_UNSPECIFIED: _ClassVar[AutoLabelMethod]
    AUTO_LABEL_METHOD_CLASSICAL: _ClassVar[AutoLabelMethod]
    AUTO_LABEL_METHOD_SAM: _ClassVar[AutoLabelMethod]
    AUTO_LABEL_METHOD_MODEL: _ClassVar[AutoLabelMethod]

class ProposalState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PROPOSAL_STATE_UNSPECIFIED: _ClassVar[ProposalState]
    PROPOSAL_STATE_PENDING: _ClassVar[ProposalState]
    PROPOSAL_STATE_ACCEPTED: _ClassVar[ProposalState]
    PROPOSAL_STATE_REJECTED: _ClassVar[ProposalState]
    PROPOSAL_STATE_REPLACED: _ClassVar[ProposalState]

class ReviewDecision(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REVIEW_DECISION_UNSPECIFIED: _ClassVar[ReviewDecision]
    REVIEW_DECISION_ACCEPT: _ClassVar[ReviewDecision]
    REVIEW_DECISION_REJECT: _ClassVar[ReviewDecision]
    REVIEW_DECISION_REPLACE: _ClassVar[ReviewDecision]

class EditCoordinates(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EDIT_COORDINATES_UNSPECIFIED: _ClassVar[EditCoordinates]
    EDIT_COORDINATES_TILE: _ClassVar[EditCoordinates]
    EDIT_COORDINATES_SLIDE: _ClassVar[EditCoordinates]

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    JOB_STATE_QUEUED: _ClassVar[JobState]
    JOB_STATE_RUNNING: _ClassVar[JobState]
    JOB_STATE_SUCCEEDED: _ClassVar[JobState]
    JOB_STATE_FAILED: _ClassVar[JobState]
    JOB_STATE_CANCELLED: _ClassVar[JobState]
SLIDE_ROLE_UNSPECIFIED: SlideRole
SLIDE_ROLE_IMAGE: SlideRole
SLIDE_ROLE_MASK: SlideRole
LABEL_SOURCE_UNSPECIFIED: LabelSource
LABEL_SOURCE_HUMAN: LabelSource
LABEL_SOURCE_CLASSICAL: LabelSource
LABEL_SOURCE_SAM: LabelSource
LABEL_SOURCE_MODEL: LabelSource
LABEL_SOURCE_IMPORT: LabelSource
SELECT_STRATEGY_UNSPECIFIED: SelectStrategy
SELECT_STRATEGY_BALANCED: SelectStrategy
SELECT_STRATEGY_PROPORTIONAL: SelectStrategy
SELECT_STRATEGY_RANDOM: SelectStrategy
SELECT_STRATEGY_ACTIVE: SelectStrategy
AUTO_LABEL_METHOD_UNSPECIFIED: AutoLabelMethod
AUTO_LABEL_METHOD_CLASSICAL: AutoLabelMethod
AUTO_LABEL_METHOD_SAM: AutoLabelMethod
AUTO_LABEL_METHOD_MODEL: AutoLabelMethod
PROPOSAL_STATE_UNSPECIFIED: ProposalState
PROPOSAL_STATE_PENDING: ProposalState
PROPOSAL_STATE_ACCEPTED: ProposalState
PROPOSAL_STATE_REJECTED: ProposalState
PROPOSAL_STATE_REPLACED: ProposalState
REVIEW_DECISION_UNSPECIFIED: ReviewDecision
REVIEW_DECISION_ACCEPT: ReviewDecision
REVIEW_DECISION_REJECT: ReviewDecision
REVIEW_DECISION_REPLACE: ReviewDecision
EDIT_COORDINATES_UNSPECIFIED: EditCoordinates
EDIT_COORDINATES_TILE: EditCoordinates
EDIT_COORDINATES_SLIDE: EditCoordinates
JOB_STATE_UNSPECIFIED: JobState
JOB_STATE_QUEUED: JobState
JOB_STATE_RUNNING: JobState
JOB_STATE_SUCCEEDED: JobState
JOB_STATE_FAILED: JobState
JOB_STATE_CANCELLED: JobState

class Rect(_message.Message):
    __slots__ = ("x", "y", "width", "height")
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    x: int
    y: int
    width: int
    height: int
    def __init__(self, x: _Optional[int] = ..., y: _Optional[int] = ..., width: _Optional[int] = ..., height: _Optional[int] = ...) -> None: ...

class Slide(_message.Message):
    __slots__ = ("slide_id", "name", "role", "width", "height", "channels", "source_channels", "dtype", "levels", "pixel_size_um", "format", "tiled", "size_bytes", "sha256", "channel", "created", "source_path")
    SLIDE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_CHANNELS_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    LEVELS_FIELD_NUMBER: _ClassVar[int]
    PIXEL_SIZE_UM_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    TILED_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    SOURCE_PATH_FIELD_NUMBER: _ClassVar[int]
    slide_id: str
    name: str
    role: SlideRole
    width: int
    height: int
    channels: int
    source_channels: int
    dtype: str
    levels: int
    pixel_size_um: float
    format: str
    tiled: bool
    size_bytes: int
    sha256: str
    channel: int
    created: str
    source_path: str
    def __init__(self, slide_id: _Optional[str] = ..., name: _Optional[str] = ..., role: _Optional[_Union[SlideRole, str]] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., channels: _Optional[int] = ..., source_channels: _Optional[int] = ..., dtype: _Optional[str] = ..., levels: _Optional[int] = ..., pixel_size_um: _Optional[float] = ..., format: _Optional[str] = ..., tiled: _Optional[bool] = ..., size_bytes: _Optional[int] = ..., sha256: _Optional[str] = ..., channel: _Optional[int] = ..., created: _Optional[str] = ..., source_path: _Optional[str] = ...) -> None: ...

class UploadSlideHeader(_message.Message):
    __slots__ = ("name", "size_bytes", "sha256", "role", "channel", "has_channel")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    HAS_CHANNEL_FIELD_NUMBER: _ClassVar[int]
    name: str
    size_bytes: int
    sha256: str
    role: SlideRole
    channel: int
    has_channel: bool
    def __init__(self, name: _Optional[str] = ..., size_bytes: _Optional[int] = ..., sha256: _Optional[str] = ..., role: _Optional[_Union[SlideRole, str]] = ..., channel: _Optional[int] = ..., has_channel: _Optional[bool] = ...) -> None: ...

class UploadSlideRequest(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: UploadSlideHeader
    chunk: bytes
    def __init__(self, header: _Optional[_Union[UploadSlideHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class RegisterSlideRequest(_message.Message):
    __slots__ = ("path", "role", "channel", "has_channel", "name")
    PATH_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    HAS_CHANNEL_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    path: str
    role: SlideRole
    channel: int
    has_channel: bool
    name: str
    def __init__(self, path: _Optional[str] = ..., role: _Optional[_Union[SlideRole, str]] = ..., channel: _Optional[int] = ..., has_channel: _Optional[bool] = ..., name: _Optional[str] = ...) -> None: ...

class GetSlideRequest(_message.Message):
    __slots__ = ("slide_id",)
    SLIDE_ID_FIELD_NUMBER: _ClassVar[int]
    slide_id: str
    def __init__(self, slide_id: _Optional[str] = ...) -> None: ...

class ListSlidesRequest(_message.Message):
    __slots__ = ("role", "page_size", "page_token")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    role: SlideRole
    page_size: int
    page_token: str
    def __init__(self, role: _Optional[_Union[SlideRole, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListSlidesResponse(_message.Message):
    __slots__ = ("slides", "next_page_token")
    SLIDES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    slides: _containers.RepeatedCompositeFieldContainer[Slide]
    next_page_token: str
    def __init__(self, slides: _Optional[_Iterable[_Union[Slide, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeleteSlideRequest(_message.Message):
    __slots__ = ("slide_id",)
    SLIDE_ID_FIELD_NUMBER: _ClassVar[int]
    slide_id: str
    def __init__(self, slide_id: _Optional[str] = ...) -> None: ...

class DeleteSlideResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ExportTilesRequest(_message.Message):
    __slots__ = ("slide_id", "tile_size", "margin", "format", "region")
    SLIDE_ID_FIELD_NUMBER: _ClassVar[int]
    TILE_SIZE_FIELD_NUMBER: _ClassVar[int]
    MARGIN_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    slide_id: str
    tile_size: int
    margin: int
    format: str
    region: Rect
    def __init__(self, slide_id: _Optional[str] = ..., tile_size: _Optional[int] = ..., margin: _Optional[int] = ..., format: _Optional[str] = ..., region: _Optional[_Union[Rect, _Mapping]] = ...) -> None: ...

class Label(_message.Message):
    __slots__ = ("label_id", "slide_id", "region", "source", "reviewer", "created", "parent_id", "version", "foreground_pixels", "objects")
    LABEL_ID_FIELD_NUMBER: _ClassVar[int]
    SLIDE_ID_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    REVIEWER_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    PARENT_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    FOREGROUND_PIXELS_FIELD_NUMBER: _ClassVar[int]
    OBJECTS_FIELD_NUMBER: _ClassVar[int]
    label_id: str
    slide_id: str
    region: Rect
    source: LabelSource
    reviewer: str
    created: str
    parent_id: str
    version: int
    foreground_pixels: int
    objects: int
    def __init__(self, label_id: _Optional[str] = ..., slide_id: _Optional[str] = ..., region: _Optional[_Union[Rect, _Mapping]] = ..., source: _Optional[_Union[LabelSource, str]] = ..., reviewer: _Optional[str] = ..., created: _Optional[str] = ..., parent_id: _Optional[str] = ..., version: _Optional[int] = ..., foreground_pixels: _Optional[int] = ..., objects: _Optional[int] = ...) -> None: ...

class AddLabelRequest(_message.Message):
    __slots__ = ("slide_id", "mask_slide_id", "region", "source", "reviewer", "parent_id", "roi_zip", "geojson")
    SLIDE_ID_FIELD_NUMBER: _ClassVar[int]
    MASK_SLIDE_ID_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    REVIEWER_FIELD_NUMBER: _ClassVar[int]
    PARENT_ID_FIELD_NUMBER: _ClassVar[int]
    ROI_ZIP_FIELD_NUMBER: _ClassVar[int]
    GEOJSON_FIELD_NUMBER: _ClassVar[int]
    slide_id: str
    mask_slide_id: str
    region: Rect
    source: LabelSource
    reviewer: str
    parent_id: str
    roi_zip: bytes
    geojson: bytes
    def __init__(self, slide_id: _Optional[str] = ..., mask_slide_id: _Optional[str] = ..., region: _Optional[_Union[Rect, _Mapping]] = ..., source: _Optional[_Union[LabelSource, str]] = ..., reviewer: _Optional[str] = ..., parent_id: _Optional[str] = ..., roi_zip: _Optional[bytes] = ..., geojson: _Optional[bytes] = ...) -> None: ...

class ListLabelsRequest(_message.Message):
    __slots__ = ("slide_id", "page_size", "page_token")
    SLIDE_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    slide_id: str
    page_size: int
    page_token: str
    def __init__(self, slide_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListLabelsResponse(_message.Message):
    __slots__ = ("labels", "next_page_token")
    LABELS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    labels: _containers.RepeatedCompositeFieldContainer[Label]
    next_page_token: str
    def __init__(self, labels: _Optional[_Iterable[_Union[Label, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeleteLabelRequest(_message.Message):
    __slots__ = ("label_id",)
    LABEL_ID_FIELD_NUMBER: _ClassVar[int]
    label_id: str
    def __init__(self, label_id: _Optional[str] = ...) -> None: ...

class DeleteLabelResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ClusterRequest(_message.Message):
    __slots__ = ("slide_id", "tile_size", "margin", "k", "seed", "epochs", "max_tiles", "region")
    SLIDE_ID_FIELD_NUMBER: _ClassVar[int]
    TILE_SIZE_FIELD_NUMBER: _ClassVar[int]
    MARGIN_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    MAX_TILES_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    slide_id: str
    tile_size: int
    margin: int
    k: int
    seed: int
    epochs: int
    max_tiles: int
    region: Rect
    def __init__(self, slide_id: _Optional[str] = ..., tile_size: _Optional[int] = ..., margin: _Optional[int] = ..., k: _Optional[int] = ..., seed: _Optional[int] = ..., epochs: _Optional[int] = ..., max_tiles: _Optional[int] = ..., region: _Optional[_Union[Rect, _Mapping]] = ...) -> None: ...

class ClusterTile(_message.Message):
    __slots__ = ("index", "region", "cluster", "tsne_x", "tsne_y", "mean_intensity")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    TSNE_X_FIELD_NUMBER: _ClassVar[int]
    TSNE_Y_FIELD_NUMBER: _ClassVar[int]
    MEAN_INTENSITY_FIELD_NUMBER: _ClassVar[int]
    index: int
    region: Rect
    cluster: int
    tsne_x: float
    tsne_y: float
    mean_intensity: float
    def __init__(self, index: _Optional[int] = ..., region: _Optional[_Union[Rect, _Mapping]] = ..., cluster: _Optional[int] = ..., tsne_x: _Optional[float] = ..., tsne_y: _Optional[float] = ..., mean_intensity: _Optional[float] = ...) -> None: ...

class Clustering(_message.Message):
    __slots__ = ("clustering_id", "slide_id", "k", "tile_size", "job_id", "cluster_sizes", "tiles", "created")
    CLUSTERING_ID_FIELD_NUMBER: _ClassVar[int]
    SLIDE_ID_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    TILE_SIZE_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_SIZES_FIELD_NUMBER: _ClassVar[int]
    TILES_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    clustering_id: str
    slide_id: str
    k: int
    tile_size: int
    job_id: str
    cluster_sizes: _containers.RepeatedScalarFieldContainer[int]
    tiles: _containers.RepeatedCompositeFieldContainer[ClusterTile]
    created: str
    def __init__(self, clustering_id: _Optional[str] = ..., slide_id: _Optional[str] = ..., k: _Optional[int] = ..., tile_size: _Optional[int] = ..., job_id: _Optional[str] = ..., cluster_sizes: _Optional[_Iterable[int]] = ..., tiles: _Optional[_Iterable[_Union[ClusterTile, _Mapping]]] = ..., created: _Optional[str] = ...) -> None: ...

class GetClusteringRequest(_message.Message):
    __slots__ = ("clustering_id", "with_tiles")
    CLUSTERING_ID_FIELD_NUMBER: _ClassVar[int]
    WITH_TILES_FIELD_NUMBER: _ClassVar[int]
    clustering_id: str
    with_tiles: bool
    def __init__(self, clustering_id: _Optional[str] = ..., with_tiles: _Optional[bool] = ...) -> None: ...

class ListClusteringsRequest(_message.Message):
    __slots__ = ("slide_id", "page_size", "page_token")
    SLIDE_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    slide_id: str
    page_size: int
    page_token: str
    def __init__(self, slide_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListClusteringsResponse(_message.Message):
    __slots__ = ("clusterings", "next_page_token")
    CLUSTERINGS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    clusterings: _containers.RepeatedCompositeFieldContainer[Clustering]
    next_page_token: str
    def __init__(self, clusterings: _Optional[_Iterable[_Union[Clustering, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class SelectRequest(_message.Message):
    __slots__ = ("clustering_id", "n", "strategy", "exclude_clusters", "model_id", "seed", "skip_labelled")
    CLUSTERING_ID_FIELD_NUMBER: _ClassVar[int]
    N_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_CLUSTERS_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    SKIP_LABELLED_FIELD_NUMBER: _ClassVar[int]
    clustering_id: str
    n: int
    strategy: SelectStrategy
    exclude_clusters: _containers.RepeatedScalarFieldContainer[int]
    model_id: str
    seed: int
    skip_labelled: bool
    def __init__(self, clustering_id: _Optional[str] = ..., n: _Optional[int] = ..., strategy: _Optional[_Union[SelectStrategy, str]] = ..., exclude_clusters: _Optional[_Iterable[int]] = ..., model_id: _Optional[str] = ..., seed: _Optional[int] = ..., skip_labelled: _Optional[bool] = ...) -> None: ...

class SelectResponse(_message.Message):
    __slots__ = ("tiles",)
    TILES_FIELD_NUMBER: _ClassVar[int]
    tiles: _containers.RepeatedCompositeFieldContainer[ClusterTile]
    def __init__(self, tiles: _Optional[_Iterable[_Union[ClusterTile, _Mapping]]] = ...) -> None: ...

class SamParams(_message.Message):
    __slots__ = ("points_per_side", "pred_iou_thresh", "stability_score_thresh", "min_area", "max_area", "has_thresholds")
    POINTS_PER_SIDE_FIELD_NUMBER: _ClassVar[int]
    PRED_IOU_THRESH_FIELD_NUMBER: _ClassVar[int]
    STABILITY_SCORE_THRESH_FIELD_NUMBER: _ClassVar[int]
    MIN_AREA_FIELD_NUMBER: _ClassVar[int]
    MAX_AREA_FIELD_NUMBER: _ClassVar[int]
    HAS_THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    points_per_side: int
    pred_iou_thresh: float
    stability_score_thresh: float
    min_area: int
    max_area: int
    has_thresholds: bool
    def __init__(self, points_per_side: _Optional[int] = ..., pred_iou_thresh: _Optional[float] = ..., stability_score_thresh: _Optional[float] = ..., min_area: _Optional[int] = ..., max_area: _Optional[int] = ..., has_thresholds: _Optional[bool] = ...) -> None: ...

class AutoLabelRequest(_message.Message):
    __slots__ = ("slide_id", "regions", "method", "model_id", "sam", "clustering_id")
    SLIDE_ID_FIELD_NUMBER: _ClassVar[int]
    REGIONS_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    SAM_FIELD_NUMBER: _ClassVar[int]
    CLUSTERING_ID_FIELD_NUMBER: _ClassVar[int]
    slide_id: str
    regions: _containers.RepeatedCompositeFieldContainer[Rect]
    method: AutoLabelMethod
    model_id: str
    sam: SamParams
    clustering_id: str
    def __init__(self, slide_id: _Optional[str] = ..., regions: _Optional[_Iterable[_Union[Rect, _Mapping]]] = ..., method: _Optional[_Union[AutoLabelMethod, str]] = ..., model_id: _Optional[str] = ..., sam: _Optional[_Union[SamParams, _Mapping]] = ..., clustering_id: _Optional[str] = ...) -> None: ...

class Proposal(_message.Message):
    __slots__ = ("proposal_id", "slide_id", "region", "source", "state", "objects", "created", "job_id", "label_id", "reviewer", "decided", "uncertainty")
    PROPOSAL_ID_FIELD_NUMBER: _ClassVar[int]
    SLIDE_ID_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    OBJECTS_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_ID_FIELD_NUMBER: _ClassVar[int]
    REVIEWER_FIELD_NUMBER: _ClassVar[int]
    DECIDED_FIELD_NUMBER: _ClassVar[int]
    UNCERTAINTY_FIELD_NUMBER: _ClassVar[int]
    proposal_id: str
    slide_id: str
    region: Rect
    source: LabelSource
    state: ProposalState
    objects: int
    created: str
    job_id: str
    label_id: str
    reviewer: str
    decided: str
    uncertainty: float
    def __init__(self, proposal_id: _Optional[str] = ..., slide_id: _Optional[str] = ..., region: _Optional[_Union[Rect, _Mapping]] = ..., source: _Optional[_Union[LabelSource, str]] = ..., state: _Optional[_Union[ProposalState, str]] = ..., objects: _Optional[int] = ..., created: _Optional[str] = ..., job_id: _Optional[str] = ..., label_id: _Optional[str] = ..., reviewer: _Optional[str] = ..., decided: _Optional[str] = ..., uncertainty: _Optional[float] = ...) -> None: ...

class ListProposalsRequest(_message.Message):
    __slots__ = ("slide_id", "state", "job_id", "page_size", "page_token")
    SLIDE_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    slide_id: str
    state: ProposalState
    job_id: str
    page_size: int
    page_token: str
    def __init__(self, slide_id: _Optional[str] = ..., state: _Optional[_Union[ProposalState, str]] = ..., job_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListProposalsResponse(_message.Message):
    __slots__ = ("proposals", "next_page_token")
    PROPOSALS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    proposals: _containers.RepeatedCompositeFieldContainer[Proposal]
    next_page_token: str
    def __init__(self, proposals: _Optional[_Iterable[_Union[Proposal, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeleteProposalRequest(_message.Message):
    __slots__ = ("proposal_id",)
    PROPOSAL_ID_FIELD_NUMBER: _ClassVar[int]
    proposal_id: str
    def __init__(self, proposal_id: _Optional[str] = ...) -> None: ...

class DeleteProposalResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ReviewRequest(_message.Message):
    __slots__ = ("proposal_id", "decision", "reviewer", "mask_slide_id", "roi_zip", "geojson", "coordinates", "replaces_label_id")
    PROPOSAL_ID_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    REVIEWER_FIELD_NUMBER: _ClassVar[int]
    MASK_SLIDE_ID_FIELD_NUMBER: _ClassVar[int]
    ROI_ZIP_FIELD_NUMBER: _ClassVar[int]
    GEOJSON_FIELD_NUMBER: _ClassVar[int]
    COORDINATES_FIELD_NUMBER: _ClassVar[int]
    REPLACES_LABEL_ID_FIELD_NUMBER: _ClassVar[int]
    proposal_id: str
    decision: ReviewDecision
    reviewer: str
    mask_slide_id: str
    roi_zip: bytes
    geojson: bytes
    coordinates: EditCoordinates
    replaces_label_id: str
    def __init__(self, proposal_id: _Optional[str] = ..., decision: _Optional[_Union[ReviewDecision, str]] = ..., reviewer: _Optional[str] = ..., mask_slide_id: _Optional[str] = ..., roi_zip: _Optional[bytes] = ..., geojson: _Optional[bytes] = ..., coordinates: _Optional[_Union[EditCoordinates, str]] = ..., replaces_label_id: _Optional[str] = ...) -> None: ...

class ReviewResponse(_message.Message):
    __slots__ = ("proposal", "label")
    PROPOSAL_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    proposal: Proposal
    label: Label
    def __init__(self, proposal: _Optional[_Union[Proposal, _Mapping]] = ..., label: _Optional[_Union[Label, _Mapping]] = ...) -> None: ...

class GetProposalTileRequest(_message.Message):
    __slots__ = ("proposal_id", "slide_id", "job_id", "skip")
    PROPOSAL_ID_FIELD_NUMBER: _ClassVar[int]
    SLIDE_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    SKIP_FIELD_NUMBER: _ClassVar[int]
    proposal_id: str
    slide_id: str
    job_id: str
    skip: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, proposal_id: _Optional[str] = ..., slide_id: _Optional[str] = ..., job_id: _Optional[str] = ..., skip: _Optional[_Iterable[str]] = ...) -> None: ...

class ProposalTile(_message.Message):
    __slots__ = ("proposal", "image_tiff", "roi_zip", "geojson", "pending", "slide_name")
    PROPOSAL_FIELD_NUMBER: _ClassVar[int]
    IMAGE_TIFF_FIELD_NUMBER: _ClassVar[int]
    ROI_ZIP_FIELD_NUMBER: _ClassVar[int]
    GEOJSON_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    SLIDE_NAME_FIELD_NUMBER: _ClassVar[int]
    proposal: Proposal
    image_tiff: bytes
    roi_zip: bytes
    geojson: bytes
    pending: int
    slide_name: str
    def __init__(self, proposal: _Optional[_Union[Proposal, _Mapping]] = ..., image_tiff: _Optional[bytes] = ..., roi_zip: _Optional[bytes] = ..., geojson: _Optional[bytes] = ..., pending: _Optional[int] = ..., slide_name: _Optional[str] = ...) -> None: ...

class ExportDatasetRequest(_message.Message):
    __slots__ = ("label_ids", "format")
    LABEL_IDS_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    label_ids: _containers.RepeatedScalarFieldContainer[str]
    format: str
    def __init__(self, label_ids: _Optional[_Iterable[str]] = ..., format: _Optional[str] = ...) -> None: ...

class Model(_message.Message):
    __slots__ = ("model_id", "name", "version", "created", "in_channels", "receptive_field", "train_tile_size", "metrics", "label_ids", "normalization", "job_id", "parent_model_id", "arch", "pixel_size_um", "postprocess")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class PostprocessEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    IN_CHANNELS_FIELD_NUMBER: _ClassVar[int]
    RECEPTIVE_FIELD_FIELD_NUMBER: _ClassVar[int]
    TRAIN_TILE_SIZE_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    LABEL_IDS_FIELD_NUMBER: _ClassVar[int]
    NORMALIZATION_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    PARENT_MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    ARCH_FIELD_NUMBER: _ClassVar[int]
    PIXEL_SIZE_UM_FIELD_NUMBER: _ClassVar[int]
    POSTPROCESS_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    name: str
    version: int
    created: str
    in_channels: int
    receptive_field: int
    train_tile_size: int
    metrics: _containers.ScalarMap[str, float]
    label_ids: _containers.RepeatedScalarFieldContainer[str]
    normalization: str
    job_id: str
    parent_model_id: str
    arch: str
    pixel_size_um: float
    postprocess: _containers.ScalarMap[str, float]
    def __init__(self, model_id: _Optional[str] = ..., name: _Optional[str] = ..., version: _Optional[int] = ..., created: _Optional[str] = ..., in_channels: _Optional[int] = ..., receptive_field: _Optional[int] = ..., train_tile_size: _Optional[int] = ..., metrics: _Optional[_Mapping[str, float]] = ..., label_ids: _Optional[_Iterable[str]] = ..., normalization: _Optional[str] = ..., job_id: _Optional[str] = ..., parent_model_id: _Optional[str] = ..., arch: _Optional[str] = ..., pixel_size_um: _Optional[float] = ..., postprocess: _Optional[_Mapping[str, float]] = ...) -> None: ...

class TrainRequest(_message.Message):
    __slots__ = ("label_ids", "epochs", "tile_size", "batch_size", "val_fraction", "seed", "name", "learning_rate", "steps_per_epoch", "base_model_id", "patience", "arch", "pixel_size_um", "members")
    LABEL_IDS_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    TILE_SIZE_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    VAL_FRACTION_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    STEPS_PER_EPOCH_FIELD_NUMBER: _ClassVar[int]
    BASE_MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    PATIENCE_FIELD_NUMBER: _ClassVar[int]
    ARCH_FIELD_NUMBER: _ClassVar[int]
    PIXEL_SIZE_UM_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    label_ids: _containers.RepeatedScalarFieldContainer[str]
    epochs: int
    tile_size: int
    batch_size: int
    val_fraction: float
    seed: int
    name: str
    learning_rate: float
    steps_per_epoch: int
    base_model_id: str
    patience: int
    arch: str
    pixel_size_um: float
    members: int
    def __init__(self, label_ids: _Optional[_Iterable[str]] = ..., epochs: _Optional[int] = ..., tile_size: _Optional[int] = ..., batch_size: _Optional[int] = ..., val_fraction: _Optional[float] = ..., seed: _Optional[int] = ..., name: _Optional[str] = ..., learning_rate: _Optional[float] = ..., steps_per_epoch: _Optional[int] = ..., base_model_id: _Optional[str] = ..., patience: _Optional[int] = ..., arch: _Optional[str] = ..., pixel_size_um: _Optional[float] = ..., members: _Optional[int] = ...) -> None: ...

class PretrainRequest(_message.Message):
    __slots__ = ("slide_ids", "arch", "epochs", "steps_per_epoch", "batch_size", "tile_size", "patch_size", "mask_ratio", "masking", "tiles", "learning_rate", "seed", "name", "pixel_size_um")
    SLIDE_IDS_FIELD_NUMBER: _ClassVar[int]
    ARCH_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    STEPS_PER_EPOCH_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    TILE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    MASK_RATIO_FIELD_NUMBER: _ClassVar[int]
    MASKING_FIELD_NUMBER: _ClassVar[int]
    TILES_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PIXEL_SIZE_UM_FIELD_NUMBER: _ClassVar[int]
    slide_ids: _containers.RepeatedScalarFieldContainer[str]
    arch: str
    epochs: int
    steps_per_epoch: int
    batch_size: int
    tile_size: int
    patch_size: int
    mask_ratio: float
    masking: str
    tiles: int
    learning_rate: float
    seed: int
    name: str
    pixel_size_um: float
    def __init__(self, slide_ids: _Optional[_Iterable[str]] = ..., arch: _Optional[str] = ..., epochs: _Optional[int] = ..., steps_per_epoch: _Optional[int] = ..., batch_size: _Optional[int] = ..., tile_size: _Optional[int] = ..., patch_size: _Optional[int] = ..., mask_ratio: _Optional[float] = ..., masking: _Optional[str] = ..., tiles: _Optional[int] = ..., learning_rate: _Optional[float] = ..., seed: _Optional[int] = ..., name: _Optional[str] = ..., pixel_size_um: _Optional[float] = ...) -> None: ...

class GetModelRequest(_message.Message):
    __slots__ = ("model_id",)
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    def __init__(self, model_id: _Optional[str] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models", "next_page_token")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[Model]
    next_page_token: str
    def __init__(self, models: _Optional[_Iterable[_Union[Model, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ExportModelRequest(_message.Message):
    __slots__ = ("model_id", "format", "authors")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    AUTHORS_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    format: str
    authors: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, model_id: _Optional[str] = ..., format: _Optional[str] = ..., authors: _Optional[_Iterable[str]] = ...) -> None: ...

class PredictRequest(_message.Message):
    __slots__ = ("slide_id", "model_id", "tile_size", "halo", "threshold", "min_size", "split_touching", "region", "stem", "regions", "tta", "pixel_size_um", "seed_threshold", "min_area_um2")
    SLIDE_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    TILE_SIZE_FIELD_NUMBER: _ClassVar[int]
    HALO_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    MIN_SIZE_FIELD_NUMBER: _ClassVar[int]
    SPLIT_TOUCHING_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    STEM_FIELD_NUMBER: _ClassVar[int]
    REGIONS_FIELD_NUMBER: _ClassVar[int]
    TTA_FIELD_NUMBER: _ClassVar[int]
    PIXEL_SIZE_UM_FIELD_NUMBER: _ClassVar[int]
    SEED_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    MIN_AREA_UM2_FIELD_NUMBER: _ClassVar[int]
    slide_id: str
    model_id: str
    tile_size: int
    halo: int
    threshold: float
    min_size: int
    split_touching: bool
    region: Rect
    stem: str
    regions: RegionMap
    tta: bool
    pixel_size_um: float
    seed_threshold: float
    min_area_um2: float
    def __init__(self, slide_id: _Optional[str] = ..., model_id: _Optional[str] = ..., tile_size: _Optional[int] = ..., halo: _Optional[int] = ..., threshold: _Optional[float] = ..., min_size: _Optional[int] = ..., split_touching: _Optional[bool] = ..., region: _Optional[_Union[Rect, _Mapping]] = ..., stem: _Optional[str] = ..., regions: _Optional[_Union[RegionMap, _Mapping]] = ..., tta: _Optional[bool] = ..., pixel_size_um: _Optional[float] = ..., seed_threshold: _Optional[float] = ..., min_area_um2: _Optional[float] = ...) -> None: ...

class RegionMap(_message.Message):
    __slots__ = ("geojson", "roi_zip", "label_image", "label_slide_id", "names", "scale", "pixel_size_um")
    GEOJSON_FIELD_NUMBER: _ClassVar[int]
    ROI_ZIP_FIELD_NUMBER: _ClassVar[int]
    LABEL_IMAGE_FIELD_NUMBER: _ClassVar[int]
    LABEL_SLIDE_ID_FIELD_NUMBER: _ClassVar[int]
    NAMES_FIELD_NUMBER: _ClassVar[int]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    PIXEL_SIZE_UM_FIELD_NUMBER: _ClassVar[int]
    geojson: bytes
    roi_zip: bytes
    label_image: bytes
    label_slide_id: str
    names: bytes
    scale: float
    pixel_size_um: float
    def __init__(self, geojson: _Optional[bytes] = ..., roi_zip: _Optional[bytes] = ..., label_image: _Optional[bytes] = ..., label_slide_id: _Optional[str] = ..., names: _Optional[bytes] = ..., scale: _Optional[float] = ..., pixel_size_um: _Optional[float] = ...) -> None: ...

class CountRegionsRequest(_message.Message):
    __slots__ = ("job_id", "regions")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    REGIONS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    regions: RegionMap
    def __init__(self, job_id: _Optional[str] = ..., regions: _Optional[_Union[RegionMap, _Mapping]] = ...) -> None: ...

class Artifact(_message.Message):
    __slots__ = ("artifact_id", "name", "size_bytes", "sha256", "media_type")
    ARTIFACT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    MEDIA_TYPE_FIELD_NUMBER: _ClassVar[int]
    artifact_id: str
    name: str
    size_bytes: int
    sha256: str
    media_type: str
    def __init__(self, artifact_id: _Optional[str] = ..., name: _Optional[str] = ..., size_bytes: _Optional[int] = ..., sha256: _Optional[str] = ..., media_type: _Optional[str] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("job_id", "kind", "state", "progress", "message", "created", "started", "finished", "metrics", "artifacts", "result_id", "params")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    ARTIFACTS_FIELD_NUMBER: _ClassVar[int]
    RESULT_ID_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    kind: str
    state: JobState
    progress: float
    message: str
    created: str
    started: str
    finished: str
    metrics: _containers.ScalarMap[str, float]
    artifacts: _containers.RepeatedCompositeFieldContainer[Artifact]
    result_id: str
    params: str
    def __init__(self, job_id: _Optional[str] = ..., kind: _Optional[str] = ..., state: _Optional[_Union[JobState, str]] = ..., progress: _Optional[float] = ..., message: _Optional[str] = ..., created: _Optional[str] = ..., started: _Optional[str] = ..., finished: _Optional[str] = ..., metrics: _Optional[_Mapping[str, float]] = ..., artifacts: _Optional[_Iterable[_Union[Artifact, _Mapping]]] = ..., result_id: _Optional[str] = ..., params: _Optional[str] = ...) -> None: ...

class JobEvent(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class WatchJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class CancelJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ("kind", "page_size", "page_token")
    KIND_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    kind: str
    page_size: int
    page_token: str
    def __init__(self, kind: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs", "next_page_token")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    next_page_token: str
    def __init__(self, jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeleteJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class DeleteJobResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DownloadArtifactRequest(_message.Message):
    __slots__ = ("artifact_id", "offset")
    ARTIFACT_ID_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    artifact_id: str
    offset: int
    def __init__(self, artifact_id: _Optional[str] = ..., offset: _Optional[int] = ...) -> None: ...

class ArtifactChunk(_message.Message):
    __slots__ = ("data", "offset", "total_bytes")
    DATA_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    offset: int
    total_bytes: int
    def __init__(self, data: _Optional[bytes] = ..., offset: _Optional[int] = ..., total_bytes: _Optional[int] = ...) -> None: ...
