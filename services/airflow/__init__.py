"""The Airflow image's extra requirements (`python -m services.airflow` prints them from uv.lock)."""
