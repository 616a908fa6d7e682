"""pydicom's public test files (CT, MR, RT, SR, ultrasound from several vendors, every transfer
syntax, broken headers; pydicom-data's too when installed) through the ultrasound gate and the
reader: every file is answered or refused in one line, and none fails. The images refused as not
ultrasound are read again as US, so that the pixel reader meets every encoding they carry."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pydicom.data
import pytest

from thyronet.apps.cli import main
from thyronet.data.corpus import ANSWERED, FAILED, REFUSED, corpus_files, screen, screen_as_ultrasound
from thyronet.data.imageio import read_image


@pytest.fixture(scope="module")
def outcomes():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about each odd header; the outcome is what is tested
        files = list(dict.fromkeys(corpus_files([*pydicom.data.get_testdata_files(), *pydicom.data.get_charset_files(),
                                                 *pydicom.data.get_palette_files()])))
        sent = {path.name: screen(path) for path in files}
        relabelled = {name: again for name, outcome in sent.items() if outcome.reason == "not ultrasound"
                      if (again := screen_as_ultrasound(outcome.path)) is not None}
    return sent, relabelled


def test_no_file_fails_and_every_refusal_is_one_line(outcomes):
    sent, relabelled = outcomes
    assert len(sent) >= 190 and len(relabelled) >= 60  # the bundled files alone; pydicom-data adds more
    for name, outcome in [*sent.items(), *relabelled.items()]:
        assert outcome.status != FAILED, f"{name}: {outcome.reason}: {outcome.detail}"
        assert "\n" not in outcome.detail and (outcome.status == ANSWERED) == (outcome.detail == "")


def test_what_the_gate_and_the_reader_say_of_known_files(outcomes):
    sent, relabelled = outcomes
    for name in ("US1_UNCR.dcm", "examples_ybr_color.dcm", "examples_palette.dcm", "OBXXXX1A_expb.dcm"):
        if name in sent:
            assert sent[name].status == ANSWERED, sent[name]
    assert sent["CT_small.dcm"].detail == "CT Image Storage, modality CT: thyronet reads ultrasound only"
    # DICOM without its preamble or file meta is DICOM all the same: refused for what it is
    assert sent["ExplVR_BigEndNoMeta.dcm"].detail == "RT Ion Plan Storage, modality RTPLAN: thyronet reads ultrasound only"
    assert sent["README.txt"].status == REFUSED and sent["README.txt"].reason == "unreadable"
    assert relabelled["CT_small.dcm"].status == ANSWERED  # 16-bit signed CT pixels read once the gate lets them in
    if "MR_truncated.dcm" in relabelled:
        assert relabelled["MR_truncated.dcm"].reason == "undecodable pixel data"


def test_a_big_endian_palette_reads_as_its_little_endian_twin():
    little, big = (Path(pydicom.data.get_testdata_file(name)) for name in ("OBXXXX1A.dcm", "OBXXXX1A_expb.dcm"))
    assert np.array_equal(read_image(little), read_image(big)) and read_image(big).std() > 10


def test_predict_on_the_bundled_files_ends_with_the_tally(tiny_run, tmp_path, capsys):
    files = [pydicom.data.get_testdata_file(name) for name in ("US1_UNCR.dcm", "CT_small.dcm", "rtplan.dcm", "no_meta.dcm")]
    assert main(["predict", str(tiny_run), *files, "--out", str(tmp_path / "rows.csv")]) == 1
    assert capsys.readouterr().out.splitlines()[-1] == "1 answered, 3 refused (2 not ultrasound, 1 unreadable)"


def test_a_source_the_writer_fails_on_is_one_line_and_the_others_get_their_results(tiny_run, tmp_path, capsys,
                                                                                    monkeypatch):
    import thyronet.apps.dicom_out as dicom_out
    from synthetic import make_us_dicom

    sources = [make_us_dicom(tmp_path / "a.dcm"), make_us_dicom(tmp_path / "b.dcm")]
    write = dicom_out.write_dicom_results

    def failing_on_a(source, *args, **kwargs):
        if Path(source).name == "a.dcm":
            raise TypeError("a header the writer does not cope with\nsecond line")
        return write(source, *args, **kwargs)

    monkeypatch.setattr(dicom_out, "write_dicom_results", failing_on_a)
    out = tmp_path / "results"
    assert main(["predict", str(tiny_run), *map(str, sources), "--dicom-out", str(out)]) == 1
    printed = capsys.readouterr()
    assert f"{sources[0]}: no SR or SEG written: TypeError: a header the writer does not cope with second line" in printed.err
    written = [path.name for path in out.iterdir()]
    assert "Traceback" not in printed.err and len(written) == 1 and written[0].endswith(".sr.dcm")  # b's SR (no outline)
