"""`python -m services.inference`: one worker process on the `inference` queue."""

from services.worker_main import run_worker

if __name__ == "__main__":
    run_worker("inference")
