"""Cohort review: evaluate every patient of a Bulk FHIR export (or a folder of bundles) at once.

    cds cohort run ./export/ --out review/ --as-of 2026-11-01
    cds cohort synth --patients 100000 --out big/ --seed 7

The flow: ``sources`` reads the input and groups NDJSON lines by patient through an on-disk
SQLite spill (``spill``), so memory does not grow with the export; ``runner`` cuts the patients
into partitions and evaluates each partition with the same function (``worker``) on a local
process pool or a Dask cluster; ``outputs`` writes per-partition results and merges them;
``report`` renders the self-contained HTML page. Every patient read is either evaluated or
rejected, and every line that could not be used is listed in errors.jsonl.
"""
