"""The HTTP API of the serving service, one FastAPI router per concern.

- `predictions`: `POST /predict` (routed) and `POST /variants/{alias}/predict` (one variant);
- `status`: `GET /models`, `/healthz`, `/readyz`, `/metrics`;
- `admin` (bearer token): `POST /variants/{alias}/reload`, `/admin/reload`, `/admin/active`.

`deps` holds the state of one process (`ServingState`, on `app.state`, built in the application's lifespan)
and the typed dependencies every route uses: the one unknown-alias check, the one body-size check and the
admin token check. `bodies` holds the request and response models (the OpenAPI document) and the error
answer. `services.serving.app.create_app` composes them.
"""
