"""A client instrumented with the real OpenTelemetry SDK for Python: one server span, one
client span around an HTTP call through the herd gateway (context injected by the SDK's
own W3C propagator), exported with the SDK's OTLP/HTTP protobuf exporter to a herd server.
Prints the trace id and the client span's id, hex, on one line.

usage: otel_client.py OTLP_URL GATEWAY_URL
"""
import sys
import urllib.request

from opentelemetry import propagate, trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

otlp_url, gateway_url = sys.argv[1], sys.argv[2]
provider = TracerProvider(resource=Resource.create({"service.name": "py-client"}))
provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=otlp_url)))
tracer = provider.get_tracer("herd-test")

with tracer.start_as_current_span("GET /checkout", kind=trace.SpanKind.SERVER) as root:
    with tracer.start_as_current_span("GET gateway", kind=trace.SpanKind.CLIENT) as call:
        headers = {}
        propagate.inject(headers)
        with urllib.request.urlopen(urllib.request.Request(gateway_url, headers=headers)) as r:
            body = r.read().decode()
            call.set_attribute("http.response.status_code", r.status)
provider.shutdown()
ctx = call.get_span_context()
print(f"{ctx.trace_id:032x} {ctx.span_id:016x} {body}")
