"""Where the CEO's shared material lives: `shared/` beside the checkout (never copied into the repo)."""
from pathlib import Path

SHARED_FMA = Path(__file__).resolve().parents[2] / "shared" / "data" / "fma"
FMA_CLIP = SHARED_FMA / "000002.mp3"
FMA_GENRES = SHARED_FMA / "genres.csv"
