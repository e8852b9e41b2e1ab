"""FlamingoClient: a thin synchronous wrapper over the flamingo.v1.Flamingo gRPC stubs.

Thread-safety: one client (one grpc channel) may be shared by many threads; every method is a
single RPC. Errors are grpc.RpcError (use .code() and .details()).
"""

import os
import pathlib
import time

import grpc

from . import _stubs

STUBS_DIR, pb2, pb2_grpc, health_pb2, health_pb2_grpc = _stubs.load()

IMAGE_MARKER = "<image>"
FLAMINGO_SERVICE = "flamingo.v1.Flamingo"
# gRPC's 4 MiB default receive limit is too small for long logprob lists; sends are unlimited.
_CHANNEL_OPTIONS = (
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", 256 * 1024 * 1024),
)
_SAMPLING_KEYS = ("temperature", "top_p", "top_k", "repetition_penalty", "seed")


# ---------------------------------------------------------------------------------------------
# Building request pieces
# ---------------------------------------------------------------------------------------------
def image(source):
    """An Image message from a file path (str or os.PathLike), raw PNG/JPEG bytes or an Image."""
    if isinstance(source, pb2.Image):
        return source
    if isinstance(source, (bytes, bytearray, memoryview)):
        return pb2.Image(data=bytes(source))
    if isinstance(source, (str, pathlib.PurePath)):
        return pb2.Image(data=pathlib.Path(source).read_bytes())
    raise TypeError(f"image: expected a path, bytes or flamingo.v1.Image, got {type(source).__name__}")


def text_part(text):
    return pb2.Part(text=text)


def image_part(source):
    return pb2.Part(image=image(source))


def part(item):
    """One prompt Part: str -> text; bytes / pathlib.Path / Image -> image; Part -> itself.

    A plain str is always text (never a file name): wrap paths in pathlib.Path or image_part().
    """
    if isinstance(item, pb2.Part):
        return item
    if isinstance(item, str):
        return text_part(item)
    return image_part(item)


def parts(prompt):
    """A list of Parts from one item (str, bytes, Path, Image, Part) or an iterable of them."""
    if isinstance(prompt, (str, bytes, bytearray, memoryview, pathlib.PurePath, pb2.Part, pb2.Image)):
        prompt = [prompt]
    return [part(item) for item in prompt]


def parts_from_template(template, images=()):
    """Splits `template` at each "<image>" marker and puts the next of `images` there, as the
    CLI's --prompt/--image do: parts_from_template("<image>A photo of", ["cat.png"]) ->
    [image(cat.png), text("A photo of")]. Empty text pieces are dropped."""
    pieces = template.split(IMAGE_MARKER)
    images = list(images)
    if len(pieces) - 1 != len(images):
        raise ValueError(
            f"prompt: {len(pieces) - 1} {IMAGE_MARKER} markers but {len(images)} images given"
        )
    out = []
    for i, piece in enumerate(pieces):
        if i > 0:
            out.append(image_part(images[i - 1]))
        if piece:
            out.append(text_part(piece))
    return out


def sampling_params(sampling=None, **kwargs):
    """SamplingParams from a message, a dict, and/or keyword arguments (temperature, top_p,
    top_k, repetition_penalty, seed); zero or None means "server default"."""
    msg = pb2.SamplingParams()
    if isinstance(sampling, pb2.SamplingParams):
        msg.CopyFrom(sampling)
    elif sampling:
        kwargs = {**dict(sampling), **kwargs}
    for key, value in kwargs.items():
        if key not in _SAMPLING_KEYS:
            raise TypeError(f"sampling: unknown option {key!r} (expected one of {', '.join(_SAMPLING_KEYS)})")
        if value is not None:
            setattr(msg, key, value)
    return msg


def generate_request(
    prompt,
    *,
    max_new_tokens=0,
    stop=(),
    ignore_eos=False,
    top_logprobs=0,
    request_id="",
    sampling=None,
    **sampling_kwargs,
):
    """A GenerateRequest; `prompt` as for parts()."""
    return pb2.GenerateRequest(
        prompt=parts(prompt),
        max_new_tokens=max_new_tokens or 0,
        sampling=sampling_params(sampling, **sampling_kwargs),
        stop=list(stop or ()),
        ignore_eos=bool(ignore_eos),
        top_logprobs=top_logprobs or 0,
        request_id=request_id or "",
    )


def caption_request(img, examples=(), *, max_new_tokens=0, sampling=None, **sampling_kwargs):
    """A CaptionRequest; `examples` are (image, caption) pairs or Example messages."""
    exs = [
        e if isinstance(e, pb2.Example) else pb2.Example(image=image(e[0]), text=e[1])
        for e in examples or ()
    ]
    return pb2.CaptionRequest(
        image=image(img),
        examples=exs,
        max_new_tokens=max_new_tokens or 0,
        sampling=sampling_params(sampling, **sampling_kwargs),
    )


def question_request(
    img, question, examples=(), *, max_new_tokens=0, sampling=None, **sampling_kwargs
):
    """A QuestionRequest; `examples` are (image, question, answer) triples or QAExample messages."""
    exs = [
        e
        if isinstance(e, pb2.QAExample)
        else pb2.QAExample(image=image(e[0]), question=e[1], answer=e[2])
        for e in examples or ()
    ]
    return pb2.QuestionRequest(
        image=image(img),
        question=question,
        examples=exs,
        max_new_tokens=max_new_tokens or 0,
        sampling=sampling_params(sampling, **sampling_kwargs),
    )


def score_request(prompt, candidates):
    if isinstance(candidates, str):
        candidates = [candidates]
    return pb2.ScoreRequest(prompt=parts(prompt), candidates=list(candidates))


def finish_reason_name(value):
    return pb2.FinishReason.Name(value)


def health_status_name(value):
    return health_pb2.HealthCheckResponse.ServingStatus.Name(value)


# ---------------------------------------------------------------------------------------------
# The client
# ---------------------------------------------------------------------------------------------
class FlamingoClient:
    """Calls a flamingo-server. `timeout` (seconds) is the default deadline of every call;
    each method also takes timeout= and metadata= to override it per call. `api_key` (default:
    the FLAMINGO_API_KEY environment variable) is sent as "authorization: Bearer KEY" with
    every call, for servers started with --api-key-file or FLAMINGO_API_KEY. TLS (a server
    with --tls-cert): `tls=True` trusts the system's CAs, `tls_ca=PATH` a PEM CA, and
    `tls_cert=PATH, tls_key=PATH` add a client certificate (a server with --tls-client-ca)."""

    def __init__(self, target="127.0.0.1:50051", timeout=None, channel=None, options=(),
                 api_key=None, tls=False, tls_ca=None, tls_cert=None, tls_key=None):
        self.target = target
        self.timeout = timeout
        key = api_key if api_key is not None else os.environ.get("FLAMINGO_API_KEY", "")
        self._auth = (("authorization", "Bearer " + key),) if key else ()
        if (tls_cert is None) != (tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        self._own_channel = channel is None
        opts = list(_CHANNEL_OPTIONS) + list(options)
        if channel is not None:
            self.channel = channel
        elif tls or tls_ca or tls_cert:
            def read(path):
                return pathlib.Path(path).read_bytes() if path else None
            creds = grpc.ssl_channel_credentials(
                root_certificates=read(tls_ca), private_key=read(tls_key),
                certificate_chain=read(tls_cert))
            self.channel = grpc.secure_channel(target, creds, options=opts)
        else:
            self.channel = grpc.insecure_channel(target, options=opts)
        self.stub = pb2_grpc.FlamingoStub(self.channel)
        self.health_stub = health_pb2_grpc.HealthStub(self.channel)

    def close(self):
        if self._own_channel:
            self.channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _kw(self, timeout, metadata):
        extra = tuple(metadata or ())
        return {
            "timeout": self.timeout if timeout is None else timeout,
            "metadata": (self._auth + extra) or None,
        }

    # -- generation ------------------------------------------------------------------------
    def generate(self, prompt, *, timeout=None, metadata=None, **options):
        """Generate(prompt) -> GenerateResponse. `prompt`: a str, image path/bytes, or a list of
        them (see parts()); options: max_new_tokens, temperature, top_p, top_k,
        repetition_penalty, seed, sampling, stop, ignore_eos, top_logprobs, request_id."""
        request = generate_request(prompt, **options)
        return self.stub.Generate(request, **self._kw(timeout, metadata))

    def generate_stream(self, prompt, *, timeout=None, metadata=None, **options):
        """GenerateStream: returns the call, an iterator of GenerateChunk that also has
        .cancel(), .code() and the other grpc.Call methods. finish_reason, usage and seed come
        on the last chunk."""
        request = generate_request(prompt, **options)
        return self.stub.GenerateStream(request, **self._kw(timeout, metadata))

    def caption(self, img, examples=(), *, timeout=None, metadata=None, **options):
        """Caption(image[, few-shot (image, caption) examples]) -> GenerateResponse."""
        request = caption_request(img, examples, **options)
        return self.stub.Caption(request, **self._kw(timeout, metadata))

    def ask(self, img, question, examples=(), *, timeout=None, metadata=None, **options):
        """AnswerQuestion(image, question[, (image, question, answer) examples]) -> GenerateResponse."""
        request = question_request(img, question, examples, **options)
        return self.stub.AnswerQuestion(request, **self._kw(timeout, metadata))

    def score(self, prompt, candidates, *, timeout=None, metadata=None):
        """Score(prompt, candidates) -> list of summed log-probabilities, one per candidate."""
        response = self.stub.Score(score_request(prompt, candidates), **self._kw(timeout, metadata))
        return list(response.logprobs)

    # -- CLIP (a server started with --model CLIP_DIR or --clip-model DIR) -------------------
    def embed(self, images=(), texts=(), *, timeout=None, metadata=None):
        """Embed(images, texts) -> (image embeddings, text embeddings): lists of float lists,
        L2-normalized, in request order. Images are paths, bytes or Image messages."""
        if isinstance(texts, str):
            texts = [texts]
        request = pb2.EmbedRequest(images=[image(i) for i in images], texts=list(texts))
        response = self.stub.Embed(request, **self._kw(timeout, metadata))
        return ([list(e.values) for e in response.image_embeddings],
                [list(e.values) for e in response.text_embeddings])

    def classify(self, img, labels, template="", *, timeout=None, metadata=None):
        """Classify(image, labels) -> one probability per label (softmax of CLIP's logits).
        template: each label's text with "{}" for the label (default "a photo of a {}.")."""
        request = pb2.ClassifyRequest(image=image(img), labels=list(labels))
        setattr(request, "template", template)
        response = self.stub.Classify(request, **self._kw(timeout, metadata))
        return list(response.probabilities)

    def model_info(self, *, timeout=None, metadata=None):
        return self.stub.GetModelInfo(pb2.ModelInfoRequest(), **self._kw(timeout, metadata))

    # -- health ------------------------------------------------------------------------------
    def health(self, service="", *, timeout=None, metadata=None):
        """grpc.health.v1 Check -> "SERVING", "NOT_SERVING", "UNKNOWN" or "SERVICE_UNKNOWN"
        (an unknown service raises grpc.RpcError NOT_FOUND)."""
        response = self.health_stub.Check(
            health_pb2.HealthCheckRequest(service=service), **self._kw(timeout, metadata)
        )
        return health_status_name(response.status)

    def wait_until_serving(self, timeout=60.0, service="", poll_s=0.1):
        """Polls health until SERVING; returns the seconds waited, raises TimeoutError."""
        start = time.monotonic()
        last = "no answer"
        while True:
            try:
                status = self.health(service, timeout=max(poll_s * 10, 1.0))
                if status == "SERVING":
                    return time.monotonic() - start
                last = status
            except grpc.RpcError as e:
                last = f"{e.code().name}: {e.details()}"
            if time.monotonic() - start > timeout:
                raise TimeoutError(
                    f"{self.target}: health of {service!r} not SERVING after {timeout:g} s (last: {last})"
                )
            time.sleep(poll_s)
