"""Qlib integration: dual track, qrun, mlruns import, lineage, and offline test models.

* `recorder` — `RecorderMirror`, used by `ModelStore(..., use_qlib_recorder=True)` to
  log each save to Qlib's Recorder, and the lookup behind `load_model_by_recorder`;
* `mlruns` / `mlruns_import` — read Qlib/MLflow tracking data (file store or sqlite)
  and import its pickles as versions (`cas-repo import-mlruns`);
* `qrun` — `CasRepoRecord`, the record a qrun workflow YAML lists to save its model as a
  version (imported by qrun through the YAML's ``module_path``, never from here);
* `lineage` / `metadata` — a dataset's lineage and `metadata_for(model, dataset, …)`;
* `synthetic` — real Qlib models on synthetic data, offline, in about a second.

This package imports nothing heavy: qlib, mlflow, lightgbm and torch are imported
inside the functions that need them, because `import qlib.contrib.model.gbdt` alone
takes ~1.8 s.
"""
