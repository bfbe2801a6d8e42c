#!/usr/bin/env bash
# seed.sh MEDIA_DIR...
#
# Copies the media files under each MEDIA_DIR into corpus/TARGET/, the seed
# folder of the fuzz target for their container (chosen by file extension),
# and every file into corpus/probe_reader/. corpus/ is git-ignored.
set -euo pipefail
cd "$(dirname "$0")"

if [ $# -eq 0 ]; then
    echo "usage: $0 MEDIA_DIR..." >&2
    exit 2
fi

target_for() {
    case "${1,,}" in
        *.mp4 | *.mov | *.m4v | *.3gp | *.m4s) echo mp4 ;;
        *.mkv | *.webm) echo matroska ;;
        *.avi) echo avi ;;
        *.ts) echo mpegts ;;
        *.mts | *.m2ts) echo m2ts ;;
        *.mpg | *.mpeg | *.vob) echo mpegps ;;
        *.ogg | *.ogv | *.oggtheora) echo ogg ;;
        *.flv) echo flv ;;
        *.asf | *.wmv) echo asf ;;
    esac
}

for dir in "$@"; do
    while IFS= read -r -d '' file; do
        target=$(target_for "$file")
        mkdir -p corpus/probe_reader
        # Names are content hashes, as libFuzzer names its own corpus files.
        name=$(sha1sum "$file" | cut -c1-40)
        cp "$file" "corpus/probe_reader/$name"
        if [ -n "$target" ]; then
            mkdir -p "corpus/$target"
            cp "$file" "corpus/$target/$name"
        fi
    done < <(find "$dir" -type f ! -name '*.json' ! -name '*.err' ! -name '*.tsv' \
        ! -name '*.mpd' ! -name '.*' -print0)
done

for seeds in corpus/*/; do
    echo "$(basename "$seeds"): $(find "$seeds" -type f | wc -l) seeds"
done
