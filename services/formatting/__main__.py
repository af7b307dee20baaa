"""`python -m services.formatting`: one worker process on the `formatting` queue."""

from services.worker_main import run_worker

if __name__ == "__main__":
    run_worker("formatting")
