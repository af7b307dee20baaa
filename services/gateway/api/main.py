"""All routers of the gateway."""

from fastapi import APIRouter

from services.gateway.api.routes import dicomweb, feedback, health, ops, reports

api_router = APIRouter()
api_router.include_router(health.router)
api_router.include_router(reports.router)
api_router.include_router(dicomweb.router)
api_router.include_router(feedback.router)  # /api/v1/reports/{id}/feedback: radiologists' verdicts
api_router.include_router(ops.router)  # /api/v1/ops: dead letters and re-driving them
