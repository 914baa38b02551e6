"""The store: one SQLite database (WAL mode) for metadata and one data directory for files.

Layout of ``data_dir``::

    fosgate.sqlite          metadata (slides, labels, models, jobs, artifacts)
    slides/<slide_id>/<name>   uploaded files (registered files stay where they are)
    labels/<label_id>.tif      accepted label masks (uint32 instance labels)
    proposals/<id>.tif         label proposals awaiting review (uint32 instance labels)
    models/<model_id>/         model.keras + fosgate.json
    jobs/<job_id>/             job outputs (artifacts)
    tmp/                       partial uploads (same file system, so os.replace is atomic)

Invariants
- A row is inserted only after its file is complete on disk (written, fsynced and renamed), so a
  row never points to a partial file; ``commit`` happens before the RPC answers.
- Ids are random, prefixed by kind ("sl_", "lb_", "md_", "jb_", "ar_").
- All access goes through one connection guarded by a lock; SQLite runs in WAL mode with
  ``synchronous=FULL`` so an acknowledged write survives a crash of the process.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import astuple, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fosgate.errors import NotFound

SCHEMA = """
CREATE TABLE IF NOT EXISTS slides (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL, path TEXT NOT NULL,
    registered INTEGER NOT NULL DEFAULT 0, channel INTEGER, info TEXT NOT NULL,
    size_bytes INTEGER NOT NULL, sha256 TEXT NOT NULL, created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS labels (
    id TEXT PRIMARY KEY, slide_id TEXT NOT NULL REFERENCES slides(id), path TEXT NOT NULL,
    x INTEGER NOT NULL, y INTEGER NOT NULL, width INTEGER NOT NULL, height INTEGER NOT NULL,
    source TEXT NOT NULL, reviewer TEXT NOT NULL, created TEXT NOT NULL, parent_id TEXT NOT NULL,
    version INTEGER NOT NULL, foreground_pixels INTEGER NOT NULL, objects INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS models (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, version INTEGER NOT NULL, path TEXT NOT NULL,
    meta TEXT NOT NULL, created TEXT NOT NULL, job_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, state TEXT NOT NULL, progress REAL NOT NULL,
    message TEXT NOT NULL, created TEXT NOT NULL, started TEXT NOT NULL, finished TEXT NOT NULL,
    metrics TEXT NOT NULL, result_id TEXT NOT NULL, params TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS artifacts (
    id TEXT PRIMARY KEY, job_id TEXT NOT NULL REFERENCES jobs(id), name TEXT NOT NULL,
    path TEXT NOT NULL, size_bytes INTEGER NOT NULL, sha256 TEXT NOT NULL, media_type TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS clusterings (
    id TEXT PRIMARY KEY, slide_id TEXT NOT NULL REFERENCES slides(id), job_id TEXT NOT NULL, path TEXT NOT NULL,
    k INTEGER NOT NULL, tile_size INTEGER NOT NULL, sizes TEXT NOT NULL, created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS proposals (
    id TEXT PRIMARY KEY, slide_id TEXT NOT NULL REFERENCES slides(id), path TEXT NOT NULL,
    x INTEGER NOT NULL, y INTEGER NOT NULL, width INTEGER NOT NULL, height INTEGER NOT NULL,
    source TEXT NOT NULL, state TEXT NOT NULL, objects INTEGER NOT NULL, created TEXT NOT NULL,
    job_id TEXT NOT NULL, label_id TEXT NOT NULL, reviewer TEXT NOT NULL, decided TEXT NOT NULL,
    uncertainty REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS labels_slide ON labels(slide_id);
CREATE INDEX IF NOT EXISTS proposals_slide ON proposals(slide_id);
CREATE INDEX IF NOT EXISTS artifacts_job ON artifacts(job_id);
"""

JOB_QUEUED, JOB_RUNNING, JOB_SUCCEEDED, JOB_FAILED, JOB_CANCELLED = (
    "queued", "running", "succeeded", "failed", "cancelled",
)
JOB_FINAL = frozenset({JOB_SUCCEEDED, JOB_FAILED, JOB_CANCELLED})


def now() -> str:
    """Current UTC time, ISO 8601 with seconds."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(6)}"


@dataclass
class SlideRow:
    id: str
    name: str
    role: str
    path: str
    registered: bool
    channel: int | None
    info: dict[str, Any]
    size_bytes: int
    sha256: str
    created: str


@dataclass
class LabelRow:
    id: str
    slide_id: str
    path: str
    x: int
    y: int
    width: int
    height: int
    source: str
    reviewer: str
    created: str
    parent_id: str
    version: int
    foreground_pixels: int
    objects: int


@dataclass
class ModelRow:
    id: str
    name: str
    version: int
    path: str
    meta: dict[str, Any]
    created: str
    job_id: str


@dataclass
class ClusteringRow:
    id: str
    slide_id: str
    job_id: str
    path: str
    k: int
    tile_size: int
    sizes: list[int]
    created: str


@dataclass
class ProposalRow:
    id: str
    slide_id: str
    path: str
    x: int
    y: int
    width: int
    height: int
    source: str
    state: str  # pending | accepted | rejected | replaced
    objects: int
    created: str
    job_id: str
    label_id: str = ""
    reviewer: str = ""
    decided: str = ""
    uncertainty: float = 0.0


@dataclass
class ArtifactRow:
    id: str
    job_id: str
    name: str
    path: str
    size_bytes: int
    sha256: str
    media_type: str


@dataclass
class JobRow:
    id: str
    kind: str
    state: str
    progress: float
    message: str
    created: str
    started: str
    finished: str
    metrics: dict[str, float]
    result_id: str
    params: dict[str, Any]
    artifacts: list[ArtifactRow] = field(default_factory=list)

    @property
    def final(self) -> bool:
        return self.state in JOB_FINAL


class Store:
    """Metadata in SQLite plus files under ``data_dir``. Thread-safe."""

    def __init__(self, data_dir: str | Path):
        self.root = Path(data_dir).resolve()
        for sub in ("slides", "labels", "proposals", "models", "jobs", "tmp"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)  # existing folders: fine on a read-only disk
        self._lock = threading.RLock()
        self.read_only = False
        try:
            self._db = self._connect()
        except sqlite3.OperationalError:
            # a read-only data folder: open the existing database read-only, so users can still list and
            # download (health says NOT_SERVING; reopen_writable() switches back once the folder is writable)
            self._db = self._connect(read_only=True)
            self.read_only = True

    def _connect(self, read_only: bool = False) -> sqlite3.Connection:
        path = self.root / "fosgate.sqlite"
        if read_only:
            if not path.is_file():
                raise sqlite3.OperationalError(f"cannot create the database in the read-only folder {self.root}")
            db = sqlite3.connect(f"{path.as_uri()}?immutable=1", uri=True, check_same_thread=False,
                                 isolation_level=None)
            db.row_factory = sqlite3.Row
            return db
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA foreign_keys=ON")
        db.executescript(SCHEMA)
        return db

    def reopen_writable(self) -> bool:
        """After a start on a read-only data folder: reconnect read-write once that works; True if writable."""
        if not self.read_only:
            return True
        with self._lock:
            try:
                db = self._connect()
            except sqlite3.Error:
                return False
            self._db.close()
            self._db, self.read_only = db, False
            return True

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def _paged(self, table: str, where: list[str], args: list[Any], after: tuple[str, str] | None,
               limit: int | None) -> list[sqlite3.Row]:
        """Rows of ``table`` in (created, id) order, after the key ``after`` (keyset paging: rows added
        meanwhile never shift a page), at most ``limit``."""
        where, args = list(where), list(args)
        if after is not None:
            where.append("(created > ? OR (created = ? AND id > ?))")
            args += [after[0], after[0], after[1]]
        sql = f"SELECT * FROM {table}" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY created, id"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(int(limit))
        return self._query(sql, tuple(args))

    # ------------------------------------------------------------------ paths
    def tmp_path(self, suffix: str = "") -> Path:
        return self.root / "tmp" / f"{secrets.token_hex(8)}{suffix}"

    def slide_dir(self, slide_id: str) -> Path:
        return self.root / "slides" / slide_id

    def label_path(self, label_id: str) -> Path:
        return self.root / "labels" / f"{label_id}.tif"

    def proposal_path(self, proposal_id: str) -> Path:
        return self.root / "proposals" / f"{proposal_id}.tif"

    def model_dir(self, model_id: str) -> Path:
        return self.root / "models" / model_id

    def job_dir(self, job_id: str) -> Path:
        d = self.root / "jobs" / job_id
        d.mkdir(parents=True, exist_ok=True)
        return d

    # ------------------------------------------------------------------ slides
    def add_slide(self, row: SlideRow) -> SlideRow:
        with self._tx() as db:
            db.execute(
                "INSERT INTO slides VALUES (?,?,?,?,?,?,?,?,?,?)",
                (row.id, row.name, row.role, row.path, int(row.registered), row.channel,
                 json.dumps(row.info), row.size_bytes, row.sha256, row.created),
            )
        return row

    @staticmethod
    def _slide(r: sqlite3.Row) -> SlideRow:
        return SlideRow(r["id"], r["name"], r["role"], r["path"], bool(r["registered"]), r["channel"],
                        json.loads(r["info"]), r["size_bytes"], r["sha256"], r["created"])

    def get_slide(self, slide_id: str) -> SlideRow:
        rows = self._query("SELECT * FROM slides WHERE id=?", (slide_id,))
        if not rows:
            raise NotFound(f"There is no slide with id '{slide_id}' on this server.")
        return self._slide(rows[0])

    def list_slides(self, role: str | None = None, *, after: tuple[str, str] | None = None,
                    limit: int | None = None) -> list[SlideRow]:
        where, args = (["role=?"], [role]) if role else ([], [])
        return [self._slide(r) for r in self._paged("slides", where, args, after, limit)]

    def delete_slide(self, slide_id: str) -> SlideRow:
        """Forget a slide (its uploaded file is removed) with its proposals and clusterings, in one
        transaction. Refused (FAILED_PRECONDITION) while labels use it (labels are the lab's work:
        delete them first) or while a queued or running job reads it."""
        import shutil

        from fosgate.errors import Precondition

        with self._tx() as db:
            r = db.execute("SELECT * FROM slides WHERE id=?", (slide_id,)).fetchone()
            if r is None:
                raise NotFound(f"There is no slide with id '{slide_id}' on this server.")
            row = self._slide(r)
            n = db.execute("SELECT COUNT(*) FROM labels WHERE slide_id=?", (slide_id,)).fetchone()[0]
            if n:
                raise Precondition(f"Slide {slide_id} has {n} stored label(s); it is kept so that no label is lost. "
                                   "Delete those labels first if you really want the slide gone.")
            busy = db.execute("SELECT id FROM jobs WHERE state IN (?, ?) AND json_extract(params, '$.slide_id')=? "
                              "LIMIT 1", (JOB_QUEUED, JOB_RUNNING, slide_id)).fetchone()
            if busy:
                raise Precondition(f"Job {busy[0]} is still using slide {slide_id}; cancel it or wait for it to end, "
                                   "then delete the slide.")
            paths = [p[0] for p in db.execute("SELECT path FROM proposals WHERE slide_id=?", (slide_id,))]
            db.execute("DELETE FROM proposals WHERE slide_id=?", (slide_id,))
            db.execute("DELETE FROM clusterings WHERE slide_id=?", (slide_id,))
            db.execute("DELETE FROM slides WHERE id=?", (slide_id,))
        for p in paths:
            Path(p).unlink(missing_ok=True)
        if not row.registered:
            shutil.rmtree(self.slide_dir(slide_id), ignore_errors=True)
        return row

    # ------------------------------------------------------------------ labels
    @staticmethod
    def _insert_label(db: sqlite3.Connection, row: LabelRow) -> None:
        db.execute("INSERT INTO labels VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", astuple(row))

    def add_label(self, row: LabelRow) -> LabelRow:
        with self._tx() as db:
            self._insert_label(db, row)
        return row

    @staticmethod
    def _label(r: sqlite3.Row) -> LabelRow:
        return LabelRow(*r)

    def get_label(self, label_id: str) -> LabelRow:
        rows = self._query("SELECT * FROM labels WHERE id=?", (label_id,))
        if not rows:
            raise NotFound(f"There is no label with id '{label_id}' on this server.")
        return self._label(rows[0])

    @staticmethod
    def _job_using(db: sqlite3.Connection, item_id: str) -> str | None:
        """A queued or running job whose parameters name ``item_id`` (ids are unique, quoted in the JSON)."""
        r = db.execute("SELECT id FROM jobs WHERE state IN (?, ?) AND instr(params, ?) > 0 LIMIT 1",
                       (JOB_QUEUED, JOB_RUNNING, json.dumps(item_id))).fetchone()
        return r[0] if r else None

    def delete_label(self, label_id: str) -> LabelRow:
        """Remove a label row and its file; a proposal that produced it keeps its decision, unlinked.
        Refused (FAILED_PRECONDITION) while a queued or running job (training, export) uses it."""
        from fosgate.errors import Precondition

        with self._tx() as db:
            r = db.execute("SELECT * FROM labels WHERE id=?", (label_id,)).fetchone()
            if r is None:
                raise NotFound(f"There is no label with id '{label_id}' on this server.")
            busy = self._job_using(db, label_id)
            if busy:
                raise Precondition(f"Job {busy} is using label {label_id}; cancel it or wait for it to end, then "
                                   "delete the label.")
            row = self._label(r)
            db.execute("UPDATE proposals SET label_id='' WHERE label_id=?", (label_id,))
            db.execute("DELETE FROM labels WHERE id=?", (label_id,))
        Path(row.path).unlink(missing_ok=True)
        return row

    def list_labels(self, slide_id: str | None = None, *, after: tuple[str, str] | None = None,
                    limit: int | None = None) -> list[LabelRow]:
        where, args = (["slide_id=?"], [slide_id]) if slide_id else ([], [])
        return [self._label(r) for r in self._paged("labels", where, args, after, limit)]

    # ------------------------------------------------------------------ clusterings
    def add_clustering(self, row: ClusteringRow) -> ClusteringRow:
        with self._tx() as db:
            db.execute("INSERT INTO clusterings VALUES (?,?,?,?,?,?,?,?)",
                       (row.id, row.slide_id, row.job_id, row.path, row.k, row.tile_size, json.dumps(row.sizes),
                        row.created))
        return row

    @staticmethod
    def _clustering(r: sqlite3.Row) -> ClusteringRow:
        return ClusteringRow(r["id"], r["slide_id"], r["job_id"], r["path"], r["k"], r["tile_size"],
                             json.loads(r["sizes"]), r["created"])

    def get_clustering(self, clustering_id: str) -> ClusteringRow:
        rows = self._query("SELECT * FROM clusterings WHERE id=?", (clustering_id,))
        if not rows:
            raise NotFound(f"There is no tile clustering with id '{clustering_id}' on this server.")
        return self._clustering(rows[0])

    def list_clusterings(self, slide_id: str = "", *, after: tuple[str, str] | None = None,
                         limit: int | None = None) -> list[ClusteringRow]:
        where, args = (["slide_id=?"], [slide_id]) if slide_id else ([], [])
        return [self._clustering(r) for r in self._paged("clusterings", where, args, after, limit)]

    # ------------------------------------------------------------------ proposals
    def add_proposal(self, row: ProposalRow) -> ProposalRow:
        with self._tx() as db:
            db.execute("INSERT INTO proposals VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                       (row.id, row.slide_id, row.path, row.x, row.y, row.width, row.height, row.source, row.state,
                        row.objects, row.created, row.job_id, row.label_id, row.reviewer, row.decided,
                        row.uncertainty))
        return row

    @staticmethod
    def _proposal(r: sqlite3.Row) -> ProposalRow:
        return ProposalRow(*r)

    def get_proposal(self, proposal_id: str) -> ProposalRow:
        rows = self._query("SELECT * FROM proposals WHERE id=?", (proposal_id,))
        if not rows:
            raise NotFound(f"There is no label proposal with id '{proposal_id}' on this server.")
        return self._proposal(rows[0])

    def list_proposals(self, slide_id: str = "", state: str = "", job_id: str = "", *,
                       after: tuple[str, str] | None = None, limit: int | None = None) -> list[ProposalRow]:
        where, args = [], []
        for col, val in (("slide_id", slide_id), ("state", state), ("job_id", job_id)):
            if val:
                where.append(f"{col}=?")
                args.append(val)
        return [self._proposal(r) for r in self._paged("proposals", where, args, after, limit)]

    def decide_proposal(self, proposal_id: str, state: str, reviewer: str, label: LabelRow | None,
                        expect: ProposalRow | None = None) -> ProposalRow:
        """Record a review decision; with a label, the label row and the decision commit together.

        Compare-and-set: with ``expect`` (the proposal as the reviewer saw it), the decision commits only
        if the proposal's state and label are still those; otherwise FAILED_PRECONDITION and nothing
        changes (so concurrent decisions leave exactly one)."""
        from fosgate.errors import Precondition

        with self._tx() as db:
            cur = db.execute("SELECT state, label_id, reviewer FROM proposals WHERE id=?", (proposal_id,)).fetchone()
            if cur is None:
                raise NotFound(f"There is no label proposal with id '{proposal_id}' on this server.")
            if expect is not None and (cur["state"], cur["label_id"]) != (expect.state, expect.label_id):
                who = f" by {cur['reviewer']}" if cur["reviewer"] else ""
                raise Precondition(f"Proposal {proposal_id} was {cur['state']}{who} while this decision was being "
                                   "made; a decision is final. List the proposal again to see the current label.")
            if label is not None:
                self._insert_label(db, label)
            db.execute("UPDATE proposals SET state=?, reviewer=?, decided=?, label_id=? WHERE id=?",
                       (state, reviewer, now(), label.id if label else "", proposal_id))
        return self.get_proposal(proposal_id)

    def delete_proposal(self, proposal_id: str) -> ProposalRow:
        """Remove a proposal row and its file; a label made from it stays."""
        from fosgate.errors import Precondition

        with self._tx() as db:
            r = db.execute("SELECT * FROM proposals WHERE id=?", (proposal_id,)).fetchone()
            if r is None:
                raise NotFound(f"There is no label proposal with id '{proposal_id}' on this server.")
            busy = self._job_using(db, proposal_id)
            if busy:
                raise Precondition(f"Job {busy} is packing proposal {proposal_id} for review; wait for it to end, "
                                   "then delete the proposal.")
            row = self._proposal(r)
            db.execute("DELETE FROM proposals WHERE id=?", (proposal_id,))
        Path(row.path).unlink(missing_ok=True)
        return row

    # ------------------------------------------------------------------ models
    def add_model(self, row: ModelRow) -> ModelRow:
        with self._tx() as db:
            db.execute("INSERT INTO models VALUES (?,?,?,?,?,?,?)",
                       (row.id, row.name, row.version, row.path, json.dumps(row.meta), row.created, row.job_id))
        return row

    def next_model_version(self, name: str) -> int:
        rows = self._query("SELECT MAX(version) AS v FROM models WHERE name=?", (name,))
        return int(rows[0]["v"] or 0) + 1

    @staticmethod
    def _model(r: sqlite3.Row) -> ModelRow:
        return ModelRow(r["id"], r["name"], r["version"], r["path"], json.loads(r["meta"]), r["created"], r["job_id"])

    def get_model(self, model_id: str) -> ModelRow:
        rows = self._query("SELECT * FROM models WHERE id=?", (model_id,))
        if not rows:
            raise NotFound(f"There is no model with id '{model_id}' on this server; "
                           "list the models with 'fosgate models'.")
        return self._model(rows[0])

    def list_models(self, *, after: tuple[str, str] | None = None, limit: int | None = None) -> list[ModelRow]:
        return [self._model(r) for r in self._paged("models", [], [], after, limit)]

    # ------------------------------------------------------------------ jobs
    def add_job(self, kind: str, params: dict[str, Any]) -> JobRow:
        row = JobRow(new_id("jb"), kind, JOB_QUEUED, 0.0, "Waiting to start.", now(), "", "", {}, "", params)
        with self._tx() as db:
            db.execute("INSERT INTO jobs VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                       (row.id, row.kind, row.state, row.progress, row.message, row.created, row.started,
                        row.finished, json.dumps(row.metrics), row.result_id, json.dumps(params)))
        return row

    def update_job(self, job_id: str, **fields: Any) -> None:
        if "metrics" in fields:
            fields["metrics"] = json.dumps(fields["metrics"])
        cols = ", ".join(f"{k}=?" for k in fields)
        with self._tx() as db:
            db.execute(f"UPDATE jobs SET {cols} WHERE id=?", (*fields.values(), job_id))

    def get_job(self, job_id: str) -> JobRow:
        rows = self._query("SELECT * FROM jobs WHERE id=?", (job_id,))
        if not rows:
            raise NotFound(f"There is no job with id '{job_id}' on this server.")
        return self._job(rows[0])

    def _job(self, r: sqlite3.Row) -> JobRow:
        job = JobRow(r["id"], r["kind"], r["state"], r["progress"], r["message"], r["created"], r["started"],
                     r["finished"], json.loads(r["metrics"]), r["result_id"], json.loads(r["params"]))
        job.artifacts = self.list_artifacts(job.id)
        return job

    def list_jobs(self, kind: str | None = None, *, after: tuple[str, str] | None = None,
                  limit: int | None = None) -> list[JobRow]:
        where, args = (["kind=?"], [kind]) if kind else ([], [])
        return [self._job(r) for r in self._paged("jobs", where, args, after, limit)]

    def count_active_jobs(self) -> int:
        """Jobs queued or running."""
        rows = self._query("SELECT COUNT(*) AS n FROM jobs WHERE state IN (?, ?)", (JOB_QUEUED, JOB_RUNNING))
        return int(rows[0]["n"])

    def delete_job(self, job_id: str) -> JobRow:
        """Remove a finished job, its artifact rows and its folder. Refused (FAILED_PRECONDITION) while it
        is queued or running, or while a clustering it made still reads its files."""
        import shutil

        from fosgate.errors import Precondition

        with self._tx() as db:
            r = db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
            if r is None:
                raise NotFound(f"There is no job with id '{job_id}' on this server.")
            if r["state"] not in JOB_FINAL:
                raise Precondition(f"Job {job_id} is {r['state']}; cancel it (fosgate jobs --cancel {job_id}) and "
                                   "delete it once it has ended.")
            cl = db.execute("SELECT id FROM clusterings WHERE job_id=? LIMIT 1", (job_id,)).fetchone()
            if cl:
                raise Precondition(f"Job {job_id} made clustering {cl[0]}, which reads the job's files; it is kept "
                                   "while the clustering exists (delete the clustering's slide to drop both).")
            db.execute("DELETE FROM artifacts WHERE job_id=?", (job_id,))
            db.execute("DELETE FROM jobs WHERE id=?", (job_id,))
        row = JobRow(r["id"], r["kind"], r["state"], r["progress"], r["message"], r["created"], r["started"],
                     r["finished"], json.loads(r["metrics"]), r["result_id"], json.loads(r["params"]))
        shutil.rmtree(self.root / "jobs" / job_id, ignore_errors=True)
        return row

    def fail_interrupted_jobs(self) -> list[str]:
        """On start-up: jobs left queued or running by a previous server process end as failed
        with a reason (their partial outputs are not trusted)."""
        rows = self._query("SELECT id FROM jobs WHERE state IN (?, ?)", (JOB_QUEUED, JOB_RUNNING))
        for r in rows:
            self.update_job(r["id"], state=JOB_FAILED, finished=now(),
                            message="The server stopped before this job finished; please submit it again.")
        return [r["id"] for r in rows]

    # ------------------------------------------------------------------ artifacts
    def add_artifact(self, row: ArtifactRow) -> ArtifactRow:
        with self._tx() as db:
            db.execute("INSERT INTO artifacts VALUES (?,?,?,?,?,?,?)",
                       (row.id, row.job_id, row.name, row.path, row.size_bytes, row.sha256, row.media_type))
        return row

    def list_artifacts(self, job_id: str) -> list[ArtifactRow]:
        rows = self._query("SELECT * FROM artifacts WHERE job_id=? ORDER BY name", (job_id,))
        return [ArtifactRow(*r) for r in rows]

    def get_artifact(self, artifact_id: str) -> ArtifactRow:
        rows = self._query("SELECT * FROM artifacts WHERE id=?", (artifact_id,))
        if not rows:
            raise NotFound(f"There is no artifact with id '{artifact_id}' on this server.")
        return ArtifactRow(*rows[0])


def fsync_replace(tmp: Path, final: Path) -> None:
    """Make ``tmp`` durable and move it to ``final`` atomically (same file system)."""
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, final)
    dir_fd = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
