#!/bin/sh
# Regenerates the decodable VP8 clips the bot publishes (crates/client/src/call/media.rs, `Clip`):
# ffmpeg's moving test pattern, 90 frames at 30 fps (one 3 s loop), one keyframe at the start and
# none after (the loop restarts on a keyframe request), no hidden alt-ref frames so every frame is
# shown and gets its own RTP timestamp. The files are committed so builds need no ffmpeg.
set -eu
cd "$(dirname "$0")"
for spec in "q 320x180 100k" "h 640x360 250k" "f 1280x720 600k"; do
  set -- $spec
  ffmpeg -hide_banner -loglevel error -y -f lavfi -i "testsrc2=size=$2:rate=30" -frames:v 90 \
    -c:v libvpx -b:v "$3" -minrate "$3" -maxrate "$3" -g 90 -keyint_min 90 -auto-alt-ref 0 \
    -lag-in-frames 0 -deadline realtime -cpu-used 8 -error-resilient 1 -f ivf "$1.ivf"
done
