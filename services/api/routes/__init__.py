"""The HTTP API, one FastAPI router per concern.

- `trainings`: `POST/GET /v1/trainings`, `GET /v1/trainings/{id}`, `POST /v1/trainings/{id}/cancel`;
- `models`: `GET /v1/models`, `POST /v1/models/{model}/rollback`, `GET /v1/rollbacks/{id}`;
- `events`: the Server-Sent Events streams `GET /v1/events`, `/v1/trainings/{id}/events`, `/v1/rollbacks/{id}/events`;
- `tokens` (admin): `POST/GET /v1/tokens`, `DELETE /v1/tokens/{id}`;
- `health`: `GET /healthz`, `/readyz` (no token).

`deps` holds the process's state (`ApiState`, built in the lifespan) and the authentication dependency
(`require(scope)`); `bodies` the request and response models (the OpenAPI document) and the error answer.
"""
