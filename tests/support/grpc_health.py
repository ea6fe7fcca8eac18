"""A real grpcio health server on loopback for the grpc probe's tests: grpc.aio's server with
grpc_health's HealthServicer (the reference implementation of grpc.health.v1), plain or TLS."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import grpc
import grpc.aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from tests.support.certs import CertFiles


@dataclass
class HealthServer:
    port: int
    servicer: health.aio.HealthServicer

    async def set(self, service: str, status: str) -> None:
        await self.servicer.set(service, health_pb2.HealthCheckResponse.ServingStatus.Value(status))


@asynccontextmanager
async def health_server(cert: CertFiles | None = None, statuses: dict[str, str] | None = None,
                        host: str = "127.0.0.1") -> AsyncIterator[HealthServer]:
    """A health server on host:0; `statuses` maps service names ("" = the server) to a status name
    (SERVING, NOT_SERVING, ...). A service not in it answers NOT_FOUND, as grpcio's servicer does."""
    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    address = f"[{host}]:0" if ":" in host else f"{host}:0"
    if cert is None:
        port = server.add_insecure_port(address)
    else:
        credentials = grpc.ssl_server_credentials([(cert.key.read_bytes(), cert.cert.read_bytes())])
        port = server.add_secure_port(address, credentials)
    await server.start()
    running = HealthServer(port, servicer)
    for service, status in (statuses or {}).items():
        await running.set(service, status)
    try:
        yield running
    finally:
        await server.stop(None)
