"""Dependencies of the audit routes: the log and the service's counters."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from acgs.audit.log import AuditLog
from acgs.services.audit.metrics import AuditMetrics
from acgs.services.audit.settings import AuditSettings


def get_log(request: Request) -> AuditLog:
    log: AuditLog = request.app.state.audit_log
    return log


def get_metrics(request: Request) -> AuditMetrics:
    metrics: AuditMetrics = request.app.state.metrics
    return metrics


def get_settings(request: Request) -> AuditSettings:
    settings: AuditSettings = request.app.state.settings
    return settings


LogDep = Annotated[AuditLog, Depends(get_log)]
MetricsDep = Annotated[AuditMetrics, Depends(get_metrics)]
SettingsDep = Annotated[AuditSettings, Depends(get_settings)]
