"""Speed of jaxvision's detection ops against numpy and TensorFlow CPU, interleaved in one process.

    python experiments/bench_ops.py --out=bench_results/ops [--quick] [--reps=7]

Cases (float32):
  - NMS, IoU threshold 0.5, max_outputs = N: 1k boxes, 10k boxes, and a batch of 16 images x 5k
    boxes; plus 10k boxes with max_outputs = 100 (detections per image). Boxes are clustered around 50 objects per image (like detector output: many
    suppressions) with uniform scores. Contenders: `jax.jit(nms)` (`jax.vmap` for the batch), the
    classic vectorized numpy greedy NMS (`tests/reference.py: nms_vectorized`, py-faster-rcnn) and
    `tf.image.non_max_suppression` (C++ CPU kernel; a Python loop over images for the batch). The
    pure-Python greedy loop (`reference.nms`) is timed at 1k only (it takes seconds at 10k).
  - box_iou 1k x 1k and 4k x 4k: jitted `box_iou` against numpy broadcasting and TF ops.
  - RoI Align, 256 channels, 50 x 68 map, 512 RoIs, 7 x 7, sampling_ratio 2, aligned=True:
    forward and forward+backward (gradient w.r.t. the features) of the jitted `roi_align`, against
    `tf.image.crop_and_resize` to 14 x 14 followed by 2 x 2 average pooling, which samples exactly
    the same points as RoI Align with sampling_ratio 2 for RoIs inside the map.
GPU contenders (torchvision.ops.nms / roi_align on CUDA) run only when torch sees a GPU and
torchvision imports; this machine has neither.

Protocol (shared/PERF.md): inputs built once; agreement checked before timing (same kept NMS
indices; RoI Align forward max abs error <= 1e-4 against the torchvision-kernel loop and against
TF; our gradient against autodiff of the whole-map formulation. TF's CPU crop_and_resize image
gradient is nondeterministic (thread race: two identical calls differ), so the gradient difference
to TF is reported, not asserted); every contender warmed up (first call = compile time,
reported apart); then contenders interleaved A B C A B C ... for --reps repetitions; median and
spread (min-max); ratio to jaxvision measured in the same run; limit ratio = achieved FLOP/s over
a 2048^3 float32 matmul measured at start-up (for the ops with a meaningful FLOP count).
Markdown table on stdout, JSON in --out.
"""

import argparse
import json
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

import reference  # noqa: E402  (tests/reference.py: the numpy contenders)

from jaxvision.ops.boxes import box_iou  # noqa: E402
from jaxvision.ops.nms import nms  # noqa: E402
from jaxvision.ops.roi import roi_align  # noqa: E402

IOU_THRESHOLD = 0.5


def load_tensorflow():
    try:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf

        tf.config.set_visible_devices([], "GPU")
        return tf
    except Exception as error:  # noqa: BLE001 - report and carry on without TF
        print(f"TensorFlow unavailable ({error}); its contenders are skipped")
        return None


def load_torchvision_gpu():
    try:
        import torch
        import torchvision

        return (torch, torchvision) if torch.cuda.is_available() else None
    except Exception:  # noqa: BLE001 - optional GPU peer
        return None


def clustered_boxes(rng, num_boxes, num_objects=50, image=1000.0):
    centres = rng.uniform(0, image, (num_objects, 2))
    sizes = rng.uniform(20, 200, (num_objects, 2))
    which = rng.integers(0, num_objects, num_boxes)
    ctr = centres[which] + rng.normal(0, 1, (num_boxes, 2)) * sizes[which] * 0.15
    wh = sizes[which] * rng.uniform(0.7, 1.3, (num_boxes, 2))
    boxes = np.concatenate([ctr - wh / 2, ctr + wh / 2], axis=1).astype(np.float32)
    return boxes, rng.uniform(0, 1, num_boxes).astype(np.float32)


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def matmul_roofline():
    a = jnp.ones((2048, 2048), jnp.float32)
    f = jax.jit(lambda a: a @ a)
    jax.block_until_ready(f(a))
    best = min(timed(lambda: jax.block_until_ready(f(a))) for _ in range(5))
    return 2 * 2048**3 / best


def run_case(name, contenders, reps, flops=None, compile_s=None):
    """contenders: {label: zero-arg callable returning when done}. First entry is jaxvision.

    compile_s: first-call times measured earlier (jaxvision compiles during the agreement check);
    contenders without one get their warm-up call timed here.
    """
    first_call = {label: timed(fn) for label, fn in contenders.items()}
    first_call.update(compile_s or {})
    times = {label: [] for label in contenders}
    for _ in range(reps):
        for label, fn in contenders.items():
            times[label].append(timed(fn))
    base = statistics.median(next(iter(times.values())))
    rows = []
    for label, ts in times.items():
        median = statistics.median(ts)
        rows.append({
            "case": name, "contender": label, "median_ms": 1e3 * median, "min_ms": 1e3 * min(ts),
            "max_ms": 1e3 * max(ts), "first_call_ms": 1e3 * first_call[label],
            "time_vs_jaxvision": median / base, "gflops": (flops / median / 1e9) if flops else None,
        })
    return rows


def nms_cases(rng, tf, tv, quick, reps):
    rows = []
    for n, max_outputs in [(1000, 1000), (10000, 10000), (10000, 100)]:
        boxes, scores = clustered_boxes(rng, n)
        jitted = jax.jit(lambda b, s, m=max_outputs: nms(b, s, iou_threshold=IOU_THRESHOLD, max_outputs=m))
        b_dev, s_dev = jnp.asarray(boxes), jnp.asarray(scores)
        start = time.perf_counter()
        indices, valid = jax.block_until_ready(jitted(b_dev, s_dev))
        compile_s = {"jaxvision jit": time.perf_counter() - start}
        ours = np.asarray(indices)[np.asarray(valid)]
        numpy_kept = reference.nms_vectorized(boxes, scores, IOU_THRESHOLD, max_outputs)
        assert np.array_equal(ours, numpy_kept), f"NMS {n}: jaxvision != numpy greedy"
        contenders = {
            "jaxvision jit": lambda: jax.block_until_ready(jitted(b_dev, s_dev)),
            "numpy greedy (vectorized)": lambda: reference.nms_vectorized(boxes, scores, IOU_THRESHOLD, max_outputs),
        }
        if n <= 1000:
            assert ours.tolist() == reference.nms(boxes, scores, IOU_THRESHOLD, max_outputs)
            contenders["numpy greedy (Python loop)"] = lambda: reference.nms(
                boxes, scores, IOU_THRESHOLD, max_outputs)
        if tf is not None:
            tf_boxes = tf.constant(boxes[:, [1, 0, 3, 2]])  # TF wants (y1, x1, y2, x2)
            tf_scores = tf.constant(scores)
            tf_kept = tf.image.non_max_suppression(
                tf_boxes, tf_scores, max_outputs, iou_threshold=IOU_THRESHOLD).numpy()
            assert np.array_equal(tf_kept, ours), f"NMS {n}: TF kept different boxes"
            contenders["tf.image.non_max_suppression"] = lambda: tf.image.non_max_suppression(
                tf_boxes, tf_scores, max_outputs, iou_threshold=IOU_THRESHOLD).numpy()
        if tv is not None:
            torch, torchvision = tv
            tb, ts = torch.as_tensor(boxes).cuda(), torch.as_tensor(scores).cuda()
            contenders["torchvision.ops.nms (GPU)"] = lambda: (torchvision.ops.nms(tb, ts, IOU_THRESHOLD),
                                                               torch.cuda.synchronize())
        name = f"NMS {n // 1000}k boxes" + (f", {max_outputs} outputs" if max_outputs < n else "")
        rows += run_case(name, contenders, reps, compile_s=compile_s)
        print(f"  {name}: {len(ours)} kept, agreement checked")

    batch, n = 16, 5000
    data = [clustered_boxes(rng, n) for _ in range(batch)]
    boxes = np.stack([d[0] for d in data])
    scores = np.stack([d[1] for d in data])
    batched = jax.jit(jax.vmap(lambda b, s: nms(b, s, iou_threshold=IOU_THRESHOLD, max_outputs=n)))
    b_dev, s_dev = jnp.asarray(boxes), jnp.asarray(scores)
    start = time.perf_counter()
    indices, valid = jax.block_until_ready(batched(b_dev, s_dev))
    compile_s = {"jaxvision jit(vmap)": time.perf_counter() - start}
    for i in range(batch):
        ref = reference.nms_vectorized(boxes[i], scores[i], IOU_THRESHOLD, n)
        assert np.array_equal(np.asarray(indices[i])[np.asarray(valid[i])], ref), f"batched NMS image {i}"
    contenders = {
        "jaxvision jit(vmap)": lambda: jax.block_until_ready(batched(b_dev, s_dev)),
        "numpy greedy (vectorized), loop": lambda: [
            reference.nms_vectorized(boxes[i], scores[i], IOU_THRESHOLD, n) for i in range(batch)],
    }
    if tf is not None:
        tf_boxes = [tf.constant(boxes[i][:, [1, 0, 3, 2]]) for i in range(batch)]
        tf_scores = [tf.constant(scores[i]) for i in range(batch)]
        contenders["tf.image.non_max_suppression, loop"] = lambda: [
            tf.image.non_max_suppression(tf_boxes[i], tf_scores[i], n, iou_threshold=IOU_THRESHOLD).numpy()
            for i in range(batch)]
    rows += run_case("NMS 16 x 5k boxes", contenders, reps, compile_s=compile_s)
    return rows


def iou_cases(rng, tf, quick, reps):
    rows = []
    for n in [1000, 4000]:
        boxes, _ = clustered_boxes(rng, n)
        jitted = jax.jit(box_iou)
        dev = jnp.asarray(boxes)
        start = time.perf_counter()
        jax.block_until_ready(jitted(dev, dev))
        compile_s = {"jaxvision jit": time.perf_counter() - start}

        def numpy_iou(a=boxes, b=boxes):
            area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
            area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
            wh = np.clip(np.minimum(a[:, None, 2:], b[None, :, 2:]) - np.maximum(a[:, None, :2], b[None, :, :2]), 0, None)
            inter = wh[..., 0] * wh[..., 1]
            return inter / (area_a[:, None] + area_b[None, :] - inter)

        np.testing.assert_allclose(np.asarray(jitted(dev, dev)), numpy_iou(), atol=1e-6)
        contenders = {
            "jaxvision jit": lambda: jax.block_until_ready(jitted(dev, dev)),
            "numpy broadcast": numpy_iou,
        }
        if tf is not None:
            tb = tf.constant(boxes)

            @tf.function(autograph=False)
            def tf_iou(a):
                area = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
                wh = tf.maximum(tf.minimum(a[:, None, 2:], a[None, :, 2:]) - tf.maximum(a[:, None, :2], a[None, :, :2]), 0.0)
                inter = wh[..., 0] * wh[..., 1]
                return inter / (area[:, None] + area[None, :] - inter)

            contenders["tf ops (tf.function)"] = lambda: tf_iou(tb).numpy()
        rows += run_case(f"box_iou {n // 1000}k x {n // 1000}k", contenders, reps, flops=12.0 * n * n,
                         compile_s=compile_s)
    return rows


def roi_align_cases(rng, tf, tv, quick, reps):
    height, width, channels, num_rois, out, stride = 50, 68, 256, 512, 7, 16
    features = rng.normal(size=(1, height, width, channels)).astype(np.float32)
    # RoIs inside the map with a margin, so border conventions agree with crop_and_resize.
    xy = rng.uniform(16, [width * stride - 200, height * stride - 200], (num_rois, 2))
    wh = rng.uniform(16, 180, (num_rois, 2))
    boxes = np.concatenate([xy, xy + wh], axis=1).astype(np.float32)
    box_indices = np.zeros(num_rois, np.int32)
    cotangent = rng.normal(size=(num_rois, out, out, channels)).astype(np.float32)
    kwargs = dict(output_size=out, spatial_scale=1 / stride, sampling_ratio=2, aligned=True)
    forward = jax.jit(lambda f, b, i: roi_align(f, b, i, **kwargs))
    backward = jax.jit(lambda f, b, i, g: jax.vjp(lambda f: roi_align(f, b, i, **kwargs), f)[1](g)[0])
    f_dev, b_dev, i_dev, g_dev = map(jnp.asarray, (features, boxes, box_indices, cotangent))
    start = time.perf_counter()
    ours = np.asarray(forward(f_dev, b_dev, i_dev))
    compile_fwd = {"jaxvision jit": time.perf_counter() - start}
    start = time.perf_counter()
    jax.block_until_ready(backward(f_dev, b_dev, i_dev, g_dev))
    compile_bwd = {"jaxvision jit": time.perf_counter() - start}
    check = slice(0, 16)  # the loop reference is slow: check the first RoIs against it
    expected = reference.roi_align(features, boxes[check], box_indices[check], (out, out), 1 / stride, 2, True)
    assert np.abs(ours[check] - expected).max() <= 1e-4, "roi_align != torchvision-kernel loop"
    # The windowed custom backward against plain autodiff of the whole-map formulation.
    ours_grad = np.asarray(backward(f_dev, b_dev, i_dev, g_dev))
    whole_map = jax.jit(lambda f, b, i, g: jax.vjp(lambda f: roi_align(f, b, i, window=None, **kwargs), f)[1](g)[0])
    grad_check = np.abs(np.asarray(whole_map(f_dev, b_dev, i_dev, g_dev)) - ours_grad).max()
    assert grad_check <= 1e-4, f"windowed roi_align gradient != whole-map autodiff: {grad_check}"
    agreement = {"gradient_vs_whole_map_autodiff": float(grad_check)}
    # Forward FLOPs of the windowed separable formulation that runs here (every RoI fits the default
    # 16 x 16 window): K * (out_h * win * win * C + out_h * win * out_w * C) multiply-adds.
    win = 16
    flops = 2.0 * num_rois * (out * win * win * channels + out * win * out * channels)
    fwd = {"jaxvision jit": lambda: jax.block_until_ready(forward(f_dev, b_dev, i_dev))}
    fwd_bwd = {"jaxvision jit": lambda: jax.block_until_ready(backward(f_dev, b_dev, i_dev, g_dev))}
    if tf is not None:
        # crop_and_resize to 2*out samples per axis at exactly RoI Align's sample points, then 2x2 mean.
        scaled = boxes / stride - 0.5
        size = scaled[:, 2:] - scaled[:, :2]
        first = scaled[:, :2] + 0.5 * size / (2 * out)
        last = scaled[:, :2] + (2 * out - 0.5) * size / (2 * out)
        normalized = np.stack([first[:, 1] / (height - 1), first[:, 0] / (width - 1),
                               last[:, 1] / (height - 1), last[:, 0] / (width - 1)], axis=1).astype(np.float32)
        tf_features, tf_boxes = tf.constant(features), tf.constant(normalized)
        tf_indices, tf_cot = tf.constant(box_indices), tf.constant(cotangent)

        @tf.function(autograph=False)
        def tf_forward(f):
            crops = tf.image.crop_and_resize(f, tf_boxes, tf_indices, (2 * out, 2 * out))
            return tf.nn.avg_pool2d(crops, 2, 2, "VALID")

        @tf.function(autograph=False)
        def tf_backward(f):
            with tf.GradientTape() as tape:
                tape.watch(f)
                y = tf_forward(f)
            return tape.gradient(y, f, output_gradients=tf_cot)

        tf_out = tf_forward(tf_features).numpy()
        error = np.abs(tf_out - ours).max()
        assert error <= 1e-4, f"roi_align vs crop_and_resize: max error {error}"
        # TF's CPU CropAndResizeGradImage races between threads: two identical calls differ (seen up
        # to ~2 here), so its gradient is reported, not asserted.
        tf_grads = [tf_backward(tf_features).numpy() for _ in range(2)]
        grad_error = np.abs(tf_grads[0] - ours_grad).max()
        tf_self = np.abs(tf_grads[0] - tf_grads[1]).max()
        print(f"  RoI Align vs crop_and_resize: fwd max error {error:.2e}; gradient max difference "
              f"{grad_error:.2e} (TF against itself, two identical calls: {tf_self:.2e})")
        agreement["tf_forward_max_error"] = float(error)
        agreement["tf_gradient_max_difference"] = float(grad_error)
        agreement["tf_gradient_run_to_run"] = float(tf_self)
        fwd["tf crop_and_resize + avg_pool"] = lambda: tf_forward(tf_features).numpy()
        fwd_bwd["tf crop_and_resize + avg_pool"] = lambda: tf_backward(tf_features).numpy()
    if tv is not None:
        torch, torchvision = tv
        tfeat = torch.as_tensor(features).permute(0, 3, 1, 2).contiguous().cuda().requires_grad_()
        rois = torch.as_tensor(np.concatenate([box_indices[:, None], boxes], axis=1)).cuda()
        run = lambda: torchvision.ops.roi_align(tfeat, rois, out, 1 / stride, 2, True)  # noqa: E731
        fwd["torchvision roi_align (GPU)"] = lambda: (run(), torch.cuda.synchronize())
        fwd_bwd["torchvision roi_align (GPU)"] = lambda: (run().sum().backward(), torch.cuda.synchronize())
    rows = run_case("RoI Align fwd", fwd, reps, flops=flops, compile_s=compile_fwd)
    rows += run_case("RoI Align fwd+bwd", fwd_bwd, reps, flops=3 * flops, compile_s=compile_bwd)
    return rows, agreement


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for results.json")
    parser.add_argument("--quick", action="store_true", help="3 repetitions, for a smoke run")
    parser.add_argument("--reps", type=int, default=None)
    args = parser.parse_args()
    reps = args.reps or (3 if args.quick else 7)
    rng = np.random.default_rng(0)
    tf = load_tensorflow()
    tv = load_torchvision_gpu()
    roofline = matmul_roofline()
    print(f"device: {jax.devices()[0].device_kind}, roofline (2048^3 f32 matmul): {roofline / 1e9:.1f} GFLOP/s")
    rows = []
    rows += nms_cases(rng, tf, tv, args.quick, reps)
    rows += iou_cases(rng, tf, args.quick, reps)
    roi_rows, roi_agreement = roi_align_cases(rng, tf, tv, args.quick, reps)
    rows += roi_rows
    for row in rows:
        row["limit_ratio"] = row["gflops"] * 1e9 / roofline if row["gflops"] else None

    print(f"\n{reps} interleaved repetitions; ratio = contender time / jaxvision time (same run)\n")
    print("| case | contender | median ms | min-max ms | first call ms | time vs jaxvision | limit ratio |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        limit = f"{r['limit_ratio']:.2f}" if r["limit_ratio"] else "-"
        print(f"| {r['case']} | {r['contender']} | {r['median_ms']:.2f} | {r['min_ms']:.2f}-{r['max_ms']:.2f} | "
              f"{r['first_call_ms']:.0f} | {r['time_vs_jaxvision']:.2f} | {limit} |")
    fwd = {r["contender"]: r["median_ms"] for r in rows if r["case"] == "RoI Align fwd"}
    fwd_bwd = {r["contender"]: r["median_ms"] for r in rows if r["case"] == "RoI Align fwd+bwd"}
    summary = {name: fwd_bwd[name] / fwd[name] for name in fwd if name in fwd_bwd}
    print("\nRoI Align (fwd+bwd) / fwd: " + ", ".join(f"{k}: {v:.2f}" for k, v in summary.items()))
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"reps": reps, "quick": args.quick, "roofline_gflops": roofline / 1e9,
                   "device": jax.devices()[0].device_kind, "tensorflow": tf is not None,
                   "rows": rows, "roi_align_fwd_bwd_over_fwd": summary, "roi_align_agreement": roi_agreement},
                  f, indent=1)
    print(f"wrote {os.path.join(args.out, 'results.json')}")


if __name__ == "__main__":
    main()
