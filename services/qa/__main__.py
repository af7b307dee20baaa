"""`python -m services.qa`: one worker process on the `qa` queue."""

from services.worker_main import run_worker

if __name__ == "__main__":
    run_worker("qa")
