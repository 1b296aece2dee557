"""A batch's output, kept whole while it is graded: records, ``marks.csv`` and feedback, written per submission.

For ``dpdl grade --out marks.csv`` the folder of ``marks.csv`` gets::

    marks.csv          the marks, rebuilt from the records each time a submission finishes
    marks_records/     one JSON record per submission: its full result, the sha256 of the bytes graded and
                       of the reference; the source of truth for --resume and `dpdl grade merge`
    marks_feedback/    one markdown file per student, written as each finishes; written_answers.md at the end

Every file is replaced atomically (:func:`~dpdl.grading.report.write_atomically`), so killing the grader at
any moment loses no finished submission and leaves no half-written file. ``--resume`` reuses the record of a
submission whose bytes and reference are unchanged (rows with status ``error`` are graded again);
``--shard K/N`` grades every N-th submission of the sorted list, and :func:`merge_outputs` joins the shards'
records into one output, refusing records made with different references or one submission twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from dpdl.grading.report import (
    WRITTEN_ANSWERS_FILE,
    GradeResult,
    feedback_markdown,
    feedback_names,
    marks_csv_text,
    remove_stale_temporaries,
    write_atomically,
    written_answers_markdown,
)

__all__ = [
    "RECORD_FORMAT",
    "Record",
    "BatchOutput",
    "MergeError",
    "records_dir",
    "default_feedback_dir",
    "read_records",
    "shard",
    "parse_shard",
    "merge_outputs",
    "file_sha256",
]

RECORD_FORMAT = 1  # bumped when a record's fields change meaning


class MergeError(ValueError):
    """Shard outputs that cannot be merged (different references, a submission graded twice, no records)."""


@dataclass
class Record:
    """One submission's grade as stored in ``<out>_records/``: the result and what it was graded against."""

    result: GradeResult
    reference_sha256: str
    written_ids: list[str]  # the reference's written answers, in order: the sections of written_answers.md

    def to_json(self) -> str:
        data = {
            "format": RECORD_FORMAT,
            "reference_sha256": self.reference_sha256,
            "written_ids": self.written_ids,
            "result": self.result.to_dict(),
        }
        return json.dumps(data, indent=1) + "\n"  # ASCII: lone surrogates from file names survive

    @classmethod
    def from_json(cls, text: str) -> Record:
        data = json.loads(text)
        if data.get("format") != RECORD_FORMAT:
            raise ValueError(f"record format {data.get('format')!r}; this dpdl reads format {RECORD_FORMAT}")
        return cls(GradeResult.from_dict(data["result"]), str(data["reference_sha256"]), list(data["written_ids"]))


def records_dir(out: str | os.PathLike) -> Path:
    """Where the records of ``--out marks.csv`` live: ``marks_records/`` beside it."""
    out = Path(out)
    return out.with_name(f"{out.stem}_records")


def default_feedback_dir(out: str | os.PathLike) -> Path:
    """The feedback folder of ``--out marks.csv`` unless ``--feedback-dir`` says otherwise: ``marks_feedback/``."""
    out = Path(out)
    return out.with_name(f"{out.stem}_feedback")


def record_file_name(submission: str) -> str:
    """A record's file name: a hash of the submission's path as given (any characters, fixed length)."""
    return hashlib.sha256(os.fsencode(submission)).hexdigest()[:32] + ".json"


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a file (the reference), read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(2**20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_records(folder: str | os.PathLike) -> tuple[dict[str, Record], list[str]]:
    """The records in ``folder`` by submission, and one problem line per file that is not a record.

    A missing folder has no records. Files are written whole (atomically), so a problem means the file
    was edited or made by another program; it is skipped, and the submission is graded again.
    """
    folder = Path(folder)
    records: dict[str, Record] = {}
    problems: list[str] = []
    if not folder.is_dir():
        return records, problems
    for path in sorted(folder.glob("*.json")):
        try:
            record = Record.from_json(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
            problems.append(f"{path}: not a grading record ({type(err).__name__}: {err}); skipped")
            continue
        if path.name != record_file_name(record.result.submission):
            problems.append(f"{path}: its name does not match its submission; skipped")
            continue
        records[record.result.submission] = record
    return records, problems


class BatchOutput:
    """The output of one ``dpdl grade`` run, written as each submission finishes (thread-safe).

    ``submissions`` are this run's, in row order; feedback file names are chosen among ``name_pool``
    (default: the submissions), so that every shard of one course names a student's file the same way.
    Without ``resume`` the records of an earlier run in the same place are removed first; with it they are
    loaded, and :meth:`keep_if_current` says which submissions need no grading.
    """

    def __init__(
        self,
        out: str | os.PathLike,
        *,
        submissions: Sequence[str],
        reference_sha256: str,
        written_ids: Sequence[str],
        feedback_dir: str | os.PathLike | None = None,
        resume: bool = False,
        name_pool: Sequence[str] | None = None,
    ) -> None:
        self.out = Path(out)
        self.records_dir = records_dir(self.out)
        self.feedback_dir = Path(feedback_dir) if feedback_dir is not None else default_feedback_dir(self.out)
        self.submissions = list(submissions)
        self.reference_sha256 = reference_sha256
        self.written_ids = list(written_ids)
        pool = list(name_pool) if name_pool is not None else self.submissions
        names = dict(zip(pool, feedback_names(pool)))
        self.feedback_files = {submission: names[submission] for submission in self.submissions}
        self.problems: list[str] = []
        self._lock = threading.Lock()
        self._feedback_written: set[str] = set()  # by this run
        self._current: set[str] = set()  # submissions whose record is this run's row (kept, graded or adopted)
        self.records: dict[str, Record] = {}
        self.records_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(self.out.parent, [self.out.name])
        remove_stale_temporaries(self.feedback_dir, [*self.feedback_files.values(), WRITTEN_ANSWERS_FILE])
        remove_stale_temporaries(self.records_dir, [record_file_name(s) for s in self.submissions])
        earlier, self.problems = read_records(self.records_dir)
        for submission, record in earlier.items():
            if resume and submission in self.feedback_files:
                self.records[submission] = record
            elif not resume:
                (self.records_dir / record_file_name(submission)).unlink(missing_ok=True)

    def keep_if_current(self, submission: str, sha256: str) -> bool:
        """Keep the earlier record of ``submission`` when its bytes (``sha256``) and the reference are unchanged
        and it did not end in ``error`` (a breakdown of the grader, worth another try); otherwise drop it,
        so that no row outlives the file it graded. Returns whether it was kept (then it needs no grading)."""
        record = self.records.get(submission)
        if record is None:
            return False
        current = (
            bool(sha256)
            and record.reference_sha256 == self.reference_sha256
            and record.result.submission_sha256 == sha256
            and record.result.status != "error"
        )
        with self._lock:
            if current:
                self._current.add(submission)
            else:
                del self.records[submission]
                (self.records_dir / record_file_name(submission)).unlink(missing_ok=True)
        return current

    def graded_with_this_reference(self, submission: str) -> bool:
        """Whether the earlier record of ``submission`` was graded against this run's reference."""
        record = self.records.get(submission)
        return record is not None and record.reference_sha256 == self.reference_sha256

    def adopt(self, record: Record) -> None:
        """Take ``record`` (from a shard) as this output's row for its submission, writing it to the records."""
        with self._lock:
            write_atomically(self.records_dir / record_file_name(record.result.submission), record.to_json())
            self.records[record.result.submission] = record
            self._current.add(record.result.submission)

    def add(self, result: GradeResult) -> None:
        """Store one finished submission: its record, its feedback, and marks.csv with every row so far."""
        record = Record(result, self.reference_sha256, self.written_ids)
        with self._lock:  # feedback first: a record (what --resume trusts) never exists without its feedback
            name = self.feedback_files.get(result.submission)
            if name is not None:
                write_atomically(self.feedback_dir / name, feedback_markdown(result))
                self._feedback_written.add(result.submission)
            write_atomically(self.records_dir / record_file_name(result.submission), record.to_json())
            self.records[result.submission] = record
            self._current.add(result.submission)
            write_atomically(self.out, marks_csv_text(self.rows()))

    def rows(self) -> list[GradeResult]:
        """This run's results so far, in the order of its submissions."""
        return [self.records[s].result for s in self.submissions if s in self._current]

    def finish(self) -> None:
        """Write marks.csv and written_answers.md from the records, and the feedback of rows reused or merged."""
        with self._lock:
            rows = self.rows()
            for result in rows:
                if result.submission not in self._feedback_written:
                    write_atomically(
                        self.feedback_dir / self.feedback_files[result.submission], feedback_markdown(result)
                    )
            if self.written_ids:
                write_atomically(
                    self.feedback_dir / WRITTEN_ANSWERS_FILE, written_answers_markdown(rows, self.written_ids)
                )
            write_atomically(self.out, marks_csv_text(rows))


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` as ``(K, N)`` with ``1 <= K <= N``; raises ValueError saying what is wrong."""
    try:
        k, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"must be K/N, e.g. 2/8 for the second of eight shards; got {text!r}") from None
    if not 1 <= k <= n:
        raise ValueError(f"K/N needs 1 <= K <= N; got {text!r}")
    return k, n


def shard(submissions: Iterable[str], k: int, n: int) -> list[str]:
    """Shard ``k`` of ``n`` (1-based): every n-th submission of the sorted list, starting with the k-th.

    The same list gives the same slices on every machine, the slices together hold each submission once,
    and their sizes differ by at most one.
    """
    return sorted(set(submissions))[k - 1 :: n]


def merge_outputs(out: str | os.PathLike, sources: Sequence[str | os.PathLike]) -> list[GradeResult]:
    """Join the records of shard outputs into ``out`` (marks.csv, records and feedback); rows sorted by path.

    Each source is a shard's ``marks.csv`` (its ``marks_records/`` beside it), its records folder, or a
    folder holding exactly one records folder. Raises :class:`MergeError` when the shards were graded
    against different references, when one submission appears in two shards, or when a source has none.
    """
    merged: dict[str, tuple[Record, Path]] = {}
    references: dict[str, Path] = {}
    duplicates: list[str] = []
    written_ids: list[str] = []
    target = records_dir(out).resolve()
    for source in sources:
        folder = _records_folder(Path(source))
        if folder.resolve() == target:
            raise MergeError(
                f"{source}: merging into {out} would overwrite this shard's records; choose another OUT.csv"
            )
        records, problems = read_records(folder)
        if problems:
            raise MergeError("; ".join(problems))
        if not records:
            raise MergeError(f"{source}: no grading records in {folder}")
        for submission, record in records.items():
            references.setdefault(record.reference_sha256, folder)
            written_ids = written_ids or record.written_ids
            if submission in merged:
                duplicates.append(f"{submission} (in {merged[submission][1]} and {folder})")
            merged[submission] = (record, folder)
    if len(references) > 1:
        listed = ", ".join(f"{sha[:12]}… in {folder}" for sha, folder in references.items())
        raise MergeError(
            f"the shards were graded against different references ({listed}); grade them all again with one"
        )
    if duplicates:
        raise MergeError(f"graded in more than one shard: {'; '.join(duplicates)}; merge each submission once")
    submissions = sorted(merged)
    reference_sha256 = next(iter(references)) if references else ""
    output = BatchOutput(out, submissions=submissions, reference_sha256=reference_sha256, written_ids=written_ids)
    for submission in submissions:
        output.adopt(merged[submission][0])
    output.finish()
    return output.rows()


def _records_folder(source: Path) -> Path:
    if source.is_dir():
        if any(source.glob("*.json")):
            return source
        found = sorted(path for path in source.glob("*_records") if path.is_dir())
        if len(found) != 1:
            raise MergeError(f"{source}: expected one *_records folder in it, found {len(found)}")
        return found[0]
    if source.suffix == ".csv":
        folder = records_dir(source)
        if not folder.is_dir():
            raise MergeError(
                f"{source}: its records folder {folder} is missing; merge needs the records beside each marks.csv"
            )
        return folder
    raise MergeError(f"{source}: not a shard's marks.csv or records folder")
