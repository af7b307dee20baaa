"""The automation switch: automatic mode, or co-sign mode where every report waits for a radiologist
and nothing leaves the platform on its own (switch.py; the CLI in cli.py)."""
