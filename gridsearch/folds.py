"""A chunk of grid points cross-validated fold by fold, each fold a claimed unit of work.

Both engines of :func:`gridsearch.search.run_grid_search` train a chunk of one optimizer's points on
one fold at once (GridSearchCV's parallel fits, the stacked engine's one model) and store each
point's result on that fold (:meth:`gridsearch.store.PointStore.save_fold`); a point's row is
written once all its folds are. :class:`FoldWork` runs those folds so that several processes on
one ``--out`` share them (issue 26 §3, :mod:`replication.claims`): the chunk's points on fold k are
claimed together before fold k is trained (all of them or none, so a fold is trained by one model of
the same members as in a single process: the stacked engine's sums depend on them), a fold claimed
by another process is left for later and the next fold or chunk taken instead, and
:func:`finish_later` waits for the folds left, re-reads them and trains only those whose claimant
stopped first. A point whose row another process wrote meanwhile (its folds then removed) is taken
from that row. Keras-free.
"""
from __future__ import annotations

from replication import claims
from replication.progress import warn

__all__ = ["FoldWork", "finish_later", "written_since"]


class FoldWork:
    """The folds of ``chunk`` (points of one optimizer, trained together) under ``settings``.

    ``compute(k, missing)`` trains ``missing`` on fold ``k``, stores each result and says so;
    it returns ``{point: fold result}``. ``name`` starts this work's lines (e.g. the optimizer).
    With ``since`` (a ``time.time()``: ``--force``) only results stored since then are read back
    (another process's, sharing the folder)."""

    def __init__(self, chunk, settings, *, store, since, progress, compute, name):
        self.chunk, self.settings, self.store, self.since = list(chunk), settings, store, since
        self.progress, self.compute, self.name = progress, compute, name
        self.results = {point: {} for point in self.chunk}  # point -> {fold: result}
        self.finished = {}  # point -> the row another process wrote meanwhile
        self.todo = list(range(settings.cv))

    def run(self, *, wait=False) -> bool:
        """Train the folds still to do; without ``wait`` one claimed elsewhere is left for a later
        call. True once every point has every fold (or its row)."""
        self.todo = [k for k in self.todo if not self._fold(k, wait)]
        return not self.todo

    def rows(self, row_from_folds) -> dict:
        """``{point: row}``: from its folds (``row_from_folds(point, settings, folds)``) or as
        another process finished it."""
        return {point: self.finished[point] if point in self.finished
                else row_from_folds(point, self.settings, self.results[point]) for point in self.chunk}

    def _fold(self, k, wait) -> bool:
        missing = self._missing(k, [p for p in self.chunk if p not in self.finished and k not in self.results[p]])
        if not missing:
            return True
        if self.store is None:
            self._train(k, missing)
            return True
        what = f"{self.name} fold {k + 1}/{self.settings.cv} of {len(missing)} point{'s' if len(missing) > 1 else ''}"
        locks = [self.store.fold_lock(self.settings, point, k) for point in missing]
        claim = claims.claim_all(locks, wait=wait,
                                 on_wait=lambda who: warn(self.progress, f"waiting for {what} ({who} claims it)"))
        if claim is None:
            warn(self.progress, f"{what}: claimed by {claims.owner(sorted(locks)[0])}; going on with the next")
            return False
        with claim:
            missing = self._missing(k, missing, quiet=True)  # read again inside the claim: done by now?
            if missing:
                self._train(k, missing)
        return True

    def _train(self, k, missing):
        fold = self.compute(k, missing)
        for point in missing:
            self.results[point][k] = fold[point]

    def _missing(self, k, points, quiet=False) -> list:
        """Read back the stored fold-``k`` results of ``points`` (or their rows, if another process
        finished them); return the points that still lack fold ``k``. Progress counts the others
        as skipped. The fold is read before the row: a finished point's row is written before its
        folds are removed, so a point found with neither has not been finished."""
        missing, skipped = [], 0
        for point in points:
            stored = self._stored(point, k, quiet)
            if stored is not None:
                self.results[point][k] = stored
                skipped += 1
                continue
            row = self._row(point)
            if row is not None:
                self.finished[point] = row
                skipped += self.settings.cv - len(self.results[point])
            else:
                missing.append(point)
        if self.progress is not None and skipped:
            self.progress.skip(n=skipped)
        return missing

    def _row(self, point):
        """The row of ``point`` if another process finished it (since ``since``, if given)."""
        if self.store is None or not written_since(self.store.path(self.settings, point), self.since):
            return None
        return self.store.load(self.settings, point)

    def _stored(self, point, k, quiet):
        if self.store is None or not written_since(self.store.fold_path(self.settings, point, k), self.since):
            return None
        label = f"{point.label()} fold {k + 1}/{self.settings.cv}"
        return self.store.load_fold(self.settings, point, k, on_damaged=None if quiet else
                                    lambda why: warn(self.progress, f"{label}: {why}; recomputing"))


def written_since(path, since) -> bool:
    """True without ``since``; else whether ``path`` was written at or after ``since`` (a ``time.time()``)."""
    if since is None:
        return True
    try:
        return path.stat().st_mtime >= since
    except OSError:
        return False


def finish_later(works, finish, row_from_folds) -> None:
    """Wait for the folds each of ``works`` left to other processes, train those whose claimant
    stopped before finishing them, and ``finish`` each chunk's rows."""
    for work in works:
        work.run(wait=True)
        finish(work.rows(row_from_folds), counted=True)
