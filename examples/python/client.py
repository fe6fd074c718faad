#!/usr/bin/env python3
"""Example narrowtune client: start a fine-tune, print its loss per step, then evaluate the tuned model.

With --lwf-weight the loss adds a learning-without-forgetting term (each step then prints its cross-entropy and KL);
with --lora-rank the job trains a LoRA adapter; with --merge-alpha and --merge-out the tuned model is then merged
with its base (WiSE-FT) into a new model directory inside the server's model roots.

Run ./generate.sh first (stubs go to gen/). Exits 0 when the job succeeded and was evaluated, 1 on an RPC
error or a job that did not succeed; errors print their status code and any BadRequest field violations.

TLS with --tls-ca (and --tls-cert/--tls-key for mutual TLS); the API key from --api-key or $NARROWTUNE_API_KEY
goes as "authorization: Bearer KEY" on every call. Without TLS a key is sent only to a loopback server.
"""

import argparse
import os
import sys
import uuid

# The stubs are generated next to this file rather than installed.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "gen"))

import grpc  # noqa: E402
from google.rpc import error_details_pb2, status_pb2  # noqa: E402
from narrowtune.v1 import tuning_service_pb2 as pb  # noqa: E402
from narrowtune.v1 import tuning_service_pb2_grpc as pb_grpc  # noqa: E402

# gRPC's rich error model: a serialized google.rpc.Status in this trailer (binary, hence -bin).
STATUS_DETAILS_KEY = "grpc-status-details-bin"
DEFAULT_TARGET = "127.0.0.1:50051"
API_KEY_ENV = "NARROWTUNE_API_KEY"
DEFAULT_POLICY = "mlp_gate_up"
EXIT_OK = 0
EXIT_FAILED = 1


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target", default=DEFAULT_TARGET, help="server host:port (default %(default)s)")
    p.add_argument("--model", required=True, help="base model directory, inside the server's model roots")
    p.add_argument("--data", required=True, help="JSONL training data, inside the server's data roots; also evaluated")
    p.add_argument("--policy", default=DEFAULT_POLICY, help="policy preset (default %(default)s)")
    p.add_argument("--include", action="append", default=[], metavar="REGEX",
                   help="trainable tensor pattern, repeatable; replaces --policy")
    p.add_argument("--exclude", action="append", default=[], metavar="REGEX", help="tensor pattern kept frozen, repeatable")
    p.add_argument("--steps", type=int, help="optimizer steps")
    p.add_argument("--lr", type=float, help="learning rate")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--seq-len", type=int)
    p.add_argument("--request-id", default=None, help="idempotency key (default: a fresh UUID)")
    p.add_argument("--lwf-weight", type=float, help="add weight·T²·KL(base ‖ model) to the loss (LwF)")
    p.add_argument("--lwf-temperature", type=float, help="LwF temperature T (server default 2)")
    p.add_argument("--lora-rank", type=int, help="train a LoRA adapter of this rank instead of the weights")
    p.add_argument("--lora-alpha", type=float, help="LoRA alpha (server default 8)")
    p.add_argument("--merge-alpha", type=float, help="after tuning, WiSE-FT merge: (1 - A)·base + A·tuned")
    p.add_argument("--merge-out", help="directory of the merged model, inside the server's model roots")
    p.add_argument("--tls-ca", metavar="FILE", help="PEM CA that signed the server's certificate (turns on TLS)")
    p.add_argument("--tls-cert", metavar="FILE", help="PEM client certificate, for mutual TLS (with --tls-key)")
    p.add_argument("--tls-key", metavar="FILE", help="PEM private key of --tls-cert")
    p.add_argument("--api-key", default=os.environ.get(API_KEY_ENV),
                   help=f"API key (default ${API_KEY_ENV}, which keeps it out of the process list)")
    args = p.parse_args(argv)
    if (args.tls_cert is None) != (args.tls_key is None):
        p.error("--tls-cert and --tls-key go together")
    if (args.merge_alpha is None) != (args.merge_out is None):
        p.error("--merge-alpha and --merge-out go together")
    return args


def read_file(path):
    if path is None:
        return None
    with open(path, "rb") as f:
        return f.read()


def channel(args):
    """A channel with TLS when a CA or client certificate is given, carrying the API key on every call."""
    if args.tls_ca or args.tls_cert:
        creds = grpc.ssl_channel_credentials(
            root_certificates=read_file(args.tls_ca),
            private_key=read_file(args.tls_key),
            certificate_chain=read_file(args.tls_cert))
    elif args.api_key:
        # Plaintext that gRPC allows to carry call credentials, and only to a loopback address.
        creds = grpc.local_channel_credentials(grpc.LocalConnectionType.LOCAL_TCP)
    else:
        return grpc.insecure_channel(args.target)
    if args.api_key:
        # Sends "authorization: Bearer <key>" with each call, streams included.
        creds = grpc.composite_channel_credentials(creds, grpc.access_token_call_credentials(args.api_key))
    return grpc.secure_channel(args.target, creds)


def start_request(args):
    # Include patterns replace the preset; the server rejects a request naming both.
    policy = pb.Policy(include=args.include, exclude=args.exclude) if args.include else pb.Policy(
        preset=args.policy, exclude=args.exclude)
    hp = pb.Hyperparameters()
    if args.steps is not None:
        hp.steps = args.steps
    if args.lr is not None:
        hp.learning_rate = args.lr
    if args.batch_size is not None:
        hp.batch_size = args.batch_size
    if args.seq_len is not None:
        hp.seq_len = args.seq_len
    request = pb.StartTuneRequest(
        request_id=args.request_id or str(uuid.uuid4()),
        base_model=pb.ModelRef(path=args.model),
        training_data=args.data,
        policy=policy,
        hyperparameters=hp,
    )
    if args.lwf_weight is not None:
        request.lwf.weight = args.lwf_weight  # the teacher defaults to the base model
        if args.lwf_temperature is not None:
            request.lwf.temperature = args.lwf_temperature
    if args.lora_rank is not None:
        request.adapter.rank = args.lora_rank
        if args.lora_alpha is not None:
            request.adapter.alpha = args.lora_alpha
    return request


def field_violations(status):
    """Field violations from the BadRequest details of a google.rpc.Status, if any."""
    out = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            out.extend(bad_request.field_violations)
    return out


def code_name(code):
    """The name of a numeric status code, as in a google.rpc.Status."""
    return next((c.name for c in grpc.StatusCode if c.value[0] == code), str(code))


def print_status(prefix, code, message, status):
    print(f"{prefix}: {code}: {message}", file=sys.stderr)
    for v in field_violations(status) if status is not None else []:
        print(f"  {v.field}: {v.description}", file=sys.stderr)


def print_rpc_error(err):
    status = None
    for key, value in err.trailing_metadata() or ():
        if key == STATUS_DETAILS_KEY:
            status = status_pb2.Status.FromString(value)
    print_status("rpc error", err.code().name, err.details(), status)


def follow(stub, name):
    """Prints each step's loss until the job rests; returns its JobFinished event (None if the stream had none)."""
    finished = None
    for event in stub.StreamMetrics(pb.StreamMetricsRequest(name=name)):
        kind = event.WhichOneof("event")
        if kind == "step":
            s = event.step
            # With an LwF term the loss is cross_entropy + weight·T²·lwf_kl.
            terms = f" (ce {s.cross_entropy:.4f} kl {s.lwf_kl:.4f})" if s.HasField("lwf_kl") else ""
            print(f"step {s.step}/{s.total_steps} loss {s.loss:.4f}{terms}", flush=True)
        elif kind == "finished":
            finished = event.finished
    return finished


def run(args):
    with channel(args) as ch:
        stub = pb_grpc.TuningServiceStub(ch)
        job = stub.StartTune(start_request(args)).job
        print(f"started {job.name} ({job.method.summary})", flush=True)

        finished = follow(stub, job.name)
        # A stream cut short still leaves the job's state on the server.
        state = finished.state if finished is not None else stub.GetTuneJob(pb.GetTuneJobRequest(name=job.name)).job.state
        state_name = pb.TuneJob.State.Name(state)
        if state != pb.TuneJob.SUCCEEDED:
            error = finished.error if finished is not None else status_pb2.Status()
            print_status(f"job {job.name} {state_name}", code_name(error.code), error.message, error)
            return EXIT_FAILED
        print(f"{job.name} {state_name}: {finished.output_path if finished else ''}", flush=True)

        request = pb.EvaluateRequest(model=pb.ModelRef(job=job.name), datasets=[pb.EvalDataset(name="training", path=args.data)])
        if args.batch_size is not None:
            request.batch_size = args.batch_size
        if args.seq_len is not None:
            request.seq_len = args.seq_len
        evaluation = stub.Evaluate(request)
        for r in evaluation.results:
            print(f"eval {r.name}: loss {r.loss:.4f} token_accuracy {r.token_accuracy:.4f} "
                  f"({r.tokens} tokens, {r.examples} examples)")

        if args.merge_alpha is not None:
            merged = stub.MergeModels(pb.MergeModelsRequest(
                base_model=pb.ModelRef(path=args.model), tuned_model=pb.ModelRef(job=job.name),
                alpha=args.merge_alpha, output_path=args.merge_out))
            print(f"merged {merged.output_path}: {merged.interpolated_tensors} of {merged.tensors} tensors "
                  f"at alpha {args.merge_alpha}")
        return EXIT_OK


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return run(args)
    except grpc.RpcError as err:
        print_rpc_error(err)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
