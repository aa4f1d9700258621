"""The records: MLflow (every mlflow call), the sweep's state.json, checkpoint storage, provenance, the study's pictures and the UIs."""
