"""CPU feature parsing (sample /proc/cpuinfo texts) and the per-CPU variant rule of `recengine.cpu_features`."""

from __future__ import annotations

import pytest

from recengine.cpu_features import CpuFeatures, choose_cpu_variant, detect, parse_cpuinfo

ZEN4_VNNI = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC
flags\t\t: fpu vme de pse tsc msr sse sse2 ssse3 fma cx16 sse4_1 sse4_2 avx f16c avx2 avx512f avx512dq avx512cd \
avx512bw avx512vl avx512_bf16 avx512_vnni avx512_bitalg

processor\t: 1
flags\t\t: fpu sse2
"""
ZEN2_AVX2 = """processor\t: 0
model name\t: AMD EPYC 7B12
flags\t\t: fpu sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 bmi2
"""
SAPPHIRE_RAPIDS = """model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: sse4_2 avx avx2 fma avx512f avx512bw avx512vl avx512_vnni avx_vnni amx_bf16 amx_tile amx_int8
"""
GRAVITON = """processor\t: 0
BogoMIPS\t: 243.75
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
CPU implementer\t: 0x41
"""
BDI = {"per_channel": True, "reduce_range": True, "weight_type": "qint8", "op_types": None}
FULL = {"per_channel": True, "reduce_range": False, "weight_type": "qint8", "op_types": None}
ALL = ("fp32", "int8", "fp16")


def test_parses_x86_flags_of_the_first_processor() -> None:
    cpu = parse_cpuinfo(ZEN4_VNNI, arch="x86_64")
    assert cpu.known and cpu.x86 and cpu.model == "AMD EPYC" and cpu.source == "/proc/cpuinfo"
    assert cpu.int8_dot_product
    assert cpu.instruction_sets() == ["sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl",
                                      "avx512_vnni", "avx512_bf16"]
    avx2 = parse_cpuinfo(ZEN2_AVX2, arch="x86_64")
    assert avx2.known and not avx2.int8_dot_product and "avx2" in avx2.instruction_sets()
    spr = parse_cpuinfo(SAPPHIRE_RAPIDS, arch="x86_64")
    assert spr.int8_dot_product and {"amx_int8", "avx_vnni"} <= set(spr.instruction_sets())


def test_parses_arm_features() -> None:
    cpu = parse_cpuinfo(GRAVITON, arch="aarch64")
    assert cpu.known and not cpu.x86 and cpu.int8_dot_product
    assert cpu.instruction_sets() == ["asimd", "asimddp"]


@pytest.mark.parametrize("text", ["", "processor : 0\nmodel name : something\n", "garbage without colons"])
def test_no_flag_line_means_unknown(text: str) -> None:
    cpu = parse_cpuinfo(text, arch="x86_64")
    assert not cpu.known and cpu.source == "unknown" and cpu.instruction_sets() == []


def test_detect_falls_back_safely_where_cpuinfo_is_missing(tmp_path) -> None:
    cpu = detect(tmp_path / "no-such-file")
    assert not cpu.known and cpu.arch  # platform.machine()
    (tmp_path / "cpuinfo").write_text(ZEN2_AVX2)
    assert detect(tmp_path / "cpuinfo").flags == parse_cpuinfo(ZEN2_AVX2).flags


def test_int8_is_served_on_every_cpu_with_reduce_range_weights() -> None:
    for text, arch in ((ZEN4_VNNI, "x86_64"), (ZEN2_AVX2, "x86_64"), (GRAVITON, "aarch64"), ("", "x86_64")):
        choice = choose_cpu_variant(ALL, BDI, parse_cpuinfo(text, arch=arch))
        assert choice.variant == "int8", (arch, choice)
    assert "int8 dot-product" in choose_cpu_variant(ALL, BDI, parse_cpuinfo(ZEN4_VNNI, arch="x86_64")).reason
    assert "unknown" in choose_cpu_variant(ALL, BDI, CpuFeatures(arch="x86_64")).reason


def test_full_range_int8_weights_fall_back_to_fp32_only_where_they_can_saturate() -> None:
    avx2 = parse_cpuinfo(ZEN2_AVX2, arch="x86_64")
    choice = choose_cpu_variant(ALL, FULL, avx2)
    assert choice.variant == "fp32" and "saturate" in choice.reason
    assert choose_cpu_variant(("int8",), FULL, avx2).variant == "int8"  # nothing better in the bundle
    assert choose_cpu_variant(ALL, FULL, parse_cpuinfo(ZEN4_VNNI, arch="x86_64")).variant == "int8"  # VNNI
    assert choose_cpu_variant(ALL, FULL, parse_cpuinfo(GRAVITON, arch="aarch64")).variant == "int8"  # Arm sdot
    assert choose_cpu_variant(ALL, FULL, CpuFeatures(arch="x86_64")).variant == "int8"  # unknown flags
    assert choose_cpu_variant(ALL, {**FULL, "weight_type": "quint8"}, avx2).variant == "int8"  # u8u8: no saturation


def test_without_int8_the_order_is_fp32_then_fp16() -> None:
    cpu = parse_cpuinfo(ZEN4_VNNI, arch="x86_64")
    assert choose_cpu_variant(("fp16", "fp32"), None, cpu).variant == "fp32"
    assert choose_cpu_variant(("fp16",), None, cpu).variant == "fp16"
    with pytest.raises(ValueError):
        choose_cpu_variant((), None, cpu)


def test_engine_reports_the_cpu_and_why_each_variant_was_loaded(tiny_bundle) -> None:
    from recengine.engine import Engine

    engine = Engine.open(tiny_bundle, device="cpu", threads=1)
    assert engine.variants["encoder"] == "int8"  # the export writes 7-bit weights: int8 on every CPU
    assert set(engine.variant_reasons) == set(engine.variants)
    assert engine.cpu_features is not None and engine.cpu_features["instruction_sets"] == detect().instruction_sets()
    forced = Engine.open(tiny_bundle, device="cpu", threads=1, variant="fp32")
    assert forced.variants["encoder"] == "fp32" and forced.variant_reasons["encoder"] == "requested"


def test_pick_variant_applies_the_cpu_rule_only_to_the_default() -> None:
    from recengine.models import pick_variant

    avx2 = parse_cpuinfo(ZEN2_AVX2, arch="x86_64")
    assert pick_variant(ALL, "cpu", None, "encoder", FULL, avx2) == "fp32"
    assert pick_variant(ALL, "cpu", "int8", "encoder", FULL, avx2) == "int8"
    assert pick_variant(ALL, "cpu", None, "encoder", BDI, avx2) == "int8"
    assert pick_variant(ALL, "cuda", None, "encoder", FULL, None) == "fp16"


def test_a_variant_dropped_at_export_is_served_by_fp32_when_asked_for() -> None:
    from recengine.errors import BundleError
    from recengine.models import dropped_variants, pick_variant

    manifest = {"metrics": {"parity": {"encoder": {"dropped": {"int8": "mean cosine 0.68"}},
                                       "pipeline": {"dropped": {"fp16": "ndcg ratio 0.5"}}}}}
    assert dropped_variants(manifest, "encoder") == {"int8", "fp16"}
    assert dropped_variants(manifest, "user_tower") == {"fp16"}
    assert dropped_variants({"metrics": {"parity": "junk"}}, "encoder") == frozenset()
    assert dropped_variants({}, "encoder") == frozenset()
    have = ("fp32", "fp16")
    assert pick_variant(have, "cpu", "int8", "encoder", dropped={"int8"}) == "fp32"
    with pytest.raises(BundleError, match="no int8 variant"):  # missing but never dropped: an error
        pick_variant(have, "cpu", "int8", "encoder")
    with pytest.raises(BundleError, match="no int8 variant"):  # dropped, but no fp32 to serve instead
        pick_variant(("fp16",), "cpu", "int8", "encoder", dropped={"int8"})
