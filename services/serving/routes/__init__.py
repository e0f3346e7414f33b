"""The HTTP routes of the serving service (the platform API is another service: services/api).

- `lean`: THE request path of every prediction endpoint (plain ASGI: admission, body, variant, codec, model,
  metrics, access log) and the middleware that gives every request its id and access-log line;
- `predictions`: `POST /predict` (routed) and `POST /variants/{alias}/predict` (one variant);
- `open_inference`: the Open Inference Protocol v2 (inference on the lean path; health, readiness, metadata as routes);
- `scoring`: MLflow's scoring protocol (`POST /invocations` on the lean path; `/ping`, `/health`, `/version`);
- `status`: `GET /models`, `/healthz`, `/readyz`, `/metrics`;
- `admin` (bearer token): `POST /variants/{alias}/reload`, `/admin/reload`, `/admin/active`.

`deps` holds the state of one process (`ServingState`, on `app.state`, built in the application's lifespan),
the one unknown-alias check and the admin token check; `guards` the admission of prediction requests. `bodies`
holds the request and response models (the OpenAPI document) and the error answer.
`services.serving.app.create_app` composes them.
"""
