# Fresh machine: `make run` (set up .venv, train the default segmenter + classifier on DDTI) or `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DDTI ?= ../shared/data/ddti
STAMP := $(VENV)/.installed

.PHONY: setup browser dicom-tools run test lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/thyronet train --data $(DDTI)

# Debian's Chromium and ChromeDriver for the web page's end-to-end test (skipped without them).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } || \
	  echo "warning: could not install chromium/chromium-driver; the browser test will be skipped"

# Debian's dicom3tools (dciodvfy), Orthanc (a PACS) and DCMTK (storescu): the DICOM tests (skipped without them).
dicom-tools:
	@command -v dciodvfy >/dev/null && command -v Orthanc >/dev/null && command -v storescu >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dicom3tools orthanc dcmtk >/dev/null; } || \
	  echo "warning: could not install dicom3tools, orthanc or dcmtk; the DICOM tests that need them will be skipped"

test: $(STAMP) browser dicom-tools
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests

clean:
	rm -rf $(VENV) runs .pytest_cache
