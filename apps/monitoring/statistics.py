"""Drift statistics: image and box features, PSI, the KS + PSI comparison. Pure functions, no database."""

import math

import numpy as np
from scipy import stats

IMAGE_FEATURES = ("brightness", "contrast", "sharpness", "color_r", "color_g", "color_b")
BOX_FEATURES = ("box_area", "box_cx", "box_cy")
# Telemetry boxes come without the frame size: take it from the frames robots uploaded, else Vector's 640×360.
VECTOR_FRAME = (640, 360)


def _hist_centroid(histogram, channel: int) -> float | None:
    """Mean position (0..1) of one channel of the 8-bin-per-channel colour histogram."""
    if not histogram or len(histogram) < 24:
        return None
    values = np.asarray(histogram[channel * 8 : channel * 8 + 8], dtype=float)
    total = values.sum()
    if total <= 0:
        return None
    return float((values * (np.arange(8) + 0.5) / 8).sum() / total)


def image_feature_values(rows) -> dict[str, list[float]]:
    """rows: (brightness, contrast, sharpness, color_histogram) tuples → feature name → values."""
    out = {name: [] for name in IMAGE_FEATURES}
    for brightness, contrast, sharpness, histogram in rows:
        out["brightness"].append(brightness)
        out["contrast"].append(contrast)
        # Sharpness (variance of the Laplacian) spans orders of magnitude; compare it on a log scale.
        out["sharpness"].append(math.log1p(max(0.0, sharpness)))
        for channel, name in enumerate(("color_r", "color_g", "color_b")):
            value = _hist_centroid(histogram, channel)
            if value is not None:
                out[name].append(value)
    return out


def box_feature_values(boxes_with_size) -> dict[str, list[float]]:
    """(box [x, y, w, h], width, height) → relative area, centre x, centre y."""
    out = {name: [] for name in BOX_FEATURES}
    for box, width, height in boxes_with_size:
        try:
            x, y, w, h = (float(v) for v in box[:4])
        except (TypeError, ValueError):
            continue
        if width <= 0 or height <= 0:
            continue
        out["box_area"].append(math.sqrt(max(0.0, w * h) / (width * height)))
        out["box_cx"].append((x + w / 2) / width)
        out["box_cy"].append((y + h / 2) / height)
    return out


def current_features(
    images: list[tuple], telemetry: list[tuple], frame: tuple[int, int] = VECTOR_FRAME
) -> dict[str, list[float]]:
    """images: (id, serial, brightness, contrast, sharpness, histogram); telemetry: (robot_id, b, c, detections)."""
    features = image_feature_values([r[2:6] for r in images])
    frame_w, frame_h = frame
    features.update(
        box_feature_values(
            (d.get("box"), frame_w, frame_h) for t in telemetry for d in (t[3] or []) if isinstance(d, dict)
        )
    )
    features["telemetry_brightness"] = [t[1] for t in telemetry if t[1] is not None]
    features["telemetry_contrast"] = [t[2] for t in telemetry if t[2] is not None]
    return features


def psi(reference, current, bins: int = 10, eps: float = 1e-4) -> float:
    """Population Stability Index over reference-quantile bins: Σ (c − r)·ln(c / r)."""
    reference, current = np.asarray(reference, dtype=float), np.asarray(current, dtype=float)
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1))[1:-1])
    ref_counts = np.bincount(np.searchsorted(edges, reference, side="right"), minlength=len(edges) + 1)
    cur_counts = np.bincount(np.searchsorted(edges, current, side="right"), minlength=len(edges) + 1)
    r = np.clip(ref_counts / ref_counts.sum(), eps, None)
    c = np.clip(cur_counts / cur_counts.sum(), eps, None)
    return float(np.sum((c - r) * np.log(c / r)))


def drift_compare(
    reference: dict[str, list[float]],
    current: dict[str, list[float]],
    *,
    min_samples: int,
    psi_threshold: float,
    p_value: float,
) -> list[dict]:
    """Compare each feature's current sample with its reference.

    A feature drifts when the two-sample Kolmogorov–Smirnov test rejects (p below ``p_value`` divided by the
    number of features tested: Bonferroni, so one report's false-alarm rate stays near that p-value) AND the PSI
    reaches ``psi_threshold`` (the effect is large enough to matter). The Wasserstein distance normed by the
    reference's spread is reported alongside, as Evidently does."""
    testable = [
        name
        for name in reference
        if len(reference.get(name) or []) >= min_samples and len(current.get(name) or []) >= min_samples
    ]
    alpha = p_value / max(1, len(testable))
    results = []
    for name in reference:
        ref = np.asarray(reference.get(name) or [], dtype=float)
        cur = np.asarray(current.get(name) or [], dtype=float)
        entry = {"feature": name, "n_ref": int(ref.size), "n_cur": int(cur.size), "threshold": psi_threshold}
        if name not in testable:
            entry.update(test="insufficient_data", drifted=False)
            results.append(entry)
            continue
        ks = stats.ks_2samp(ref, cur)
        spread = float(np.std(ref)) or 1e-9
        value = psi(ref, cur)
        entry.update(
            test="ks+psi",
            statistic=round(float(ks.statistic), 6),
            p_value=float(ks.pvalue),
            alpha=alpha,
            psi=round(value, 6),
            wasserstein_normed=round(float(stats.wasserstein_distance(ref, cur)) / spread, 6),
            ref_mean=round(float(ref.mean()), 6),
            cur_mean=round(float(cur.mean()), 6),
            drifted=bool(ks.pvalue < alpha and value >= psi_threshold),
        )
        results.append(entry)
    return results


def drift_message(scope_label: str, results: list[dict]) -> tuple[str, float]:
    """The alert's text naming the drifted features, and the largest PSI among them."""
    drifted = [r for r in results if r.get("drifted")]
    parts = [
        f"{r['feature']} (PSI {r['psi']:.2f}, KS p={r['p_value']:.1e}, mean {r['ref_mean']:.3g} → {r['cur_mean']:.3g})"
        for r in drifted
    ]
    return f"Data drift on {scope_label}: " + "; ".join(parts), max(r["psi"] for r in drifted)


def labeling_scores(image_rows: list[tuple], reference: dict, drifted: list[str]) -> np.ndarray:
    """How unlike the reference each image is on the drifted image features (sum of robust z-scores)."""
    image_features = [name for name in drifted if name in IMAGE_FEATURES]
    scores = np.zeros(len(image_rows))
    if image_features:
        values = image_feature_values([r[2:6] for r in image_rows])
        for name in image_features:
            ref = np.asarray(reference[name], dtype=float)
            column = np.asarray(values[name], dtype=float)
            if column.size == len(image_rows):
                scores += np.abs(column - np.median(ref)) / (np.std(ref) or 1e-9)
    return scores
