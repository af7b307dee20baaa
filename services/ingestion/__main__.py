"""`python -m services.ingestion`: one worker process on the `ingestion` queue."""

from services.worker_main import run_worker

if __name__ == "__main__":
    run_worker("ingestion")
