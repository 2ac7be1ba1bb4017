# The device check of decoding JPEGs on the GPU (logs: h200-device-decode*.log; v1 has the probe): run on the GPU machine, with
# a copy of this tree and .gpu/ (site-packages the machine lacks, and 160 hymenoptera JPEGs in .gpu/data).
export PYTHONPATH=$PWD/.gpu/site:$PWD
python3 -c "import torch, torchvision, sys; print(sys.version.split()[0], torch.__version__, torchvision.__version__, torch.cuda.get_device_name())"
[ "$1" = probe ] && { echo "== probe"; timeout 60 python3 bench/gpu/nvjpeg_probe.py 2>&1 | grep -v Warn; }
echo "== tests on cuda"; timeout 90 python3 -m pytest -q -p no:cacheprovider -o addopts="" tests/test_device_decode.py 2>&1 | tail -4
for b in ${SIZES:-64 256}; do echo "== sscd $b"; timeout 120 python3 bench/scan.py --part embed --encoder sscd-distilled --device cuda --backend torch --data .gpu/data --repeat 8 --batch-size $b 2>&1 | grep -v Warn; done
echo "== clip"; timeout 100 python3 bench/scan.py --part embed --encoder clip-vit-b32 --random-weights --device cuda --data .gpu/data --repeat 8 --batch-size 256 2>&1 | grep -v -i warn
echo "== dinov2"; timeout 100 python3 bench/scan.py --part embed --encoder dinov2-vitb14 --random-weights --device cuda --data .gpu/data --repeat 4 --batch-size 128 2>&1 | grep -v -i warn
