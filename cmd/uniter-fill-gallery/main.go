// Command uniter-fill-gallery grows a benchmark gallery to a given size with synthetic copies
// of the images of a source gallery (bbolt), written into a bbolt data directory or a
// PostgreSQL database. The source's images go in unchanged; copy c of image x gets the ID
// "syn<c>-<x>" (after every hex ID in byte order), a hash of its own, no thumbnail, x's
// features and boxes, and x's class and attribute distributions with each region's row scaled
// by a factor drawn from [0.85, 1] (the same top labels, supports that differ from copy to
// copy, so that the first stage does not see 100 exact ties). Idempotent: images already in
// the target are kept, and filling stops at the size asked for.
//
//	uniter-fill-gallery --source .cache/bench/gallery-X --images 100000 --dsn postgres://…
//
// See scripts/bench-gallery.sh.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/uniter-serve/uniter/gallery"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "uniter-fill-gallery:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("uniter-fill-gallery", flag.ContinueOnError)
	source := fs.String("source", "", "the source gallery's data directory (bbolt)")
	dataDir := fs.String("data-dir", "", "the target: a bbolt data directory")
	dsn := fs.String("dsn", "", "the target: a PostgreSQL database")
	size := fs.Int("images", 0, "grow the target to this many images")
	batch := fs.Int("batch", 250, "images per write transaction")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *source == "" || *size < 1 || (*dataDir == "") == (*dsn == "") {
		return errors.New("give --source, --images N and one of --data-dir and --dsn")
	}
	src, err := gallery.Open(*source, gallery.Options{})
	if err != nil {
		return err
	}
	defer src.Close()
	originals, err := readAll(ctx, src)
	if err != nil {
		return err
	}
	if len(originals) == 0 {
		return fmt.Errorf("%s holds no image", *source)
	}
	var dst gallery.Store
	if *dsn != "" {
		dst, err = gallery.OpenPostgres(ctx, *dsn, gallery.Options{})
	} else {
		dst, err = gallery.Open(*dataDir, gallery.Options{})
	}
	if err != nil {
		return err
	}
	defer dst.Close()
	st, err := dst.Stats(ctx)
	if err != nil {
		return err
	}
	start, have := time.Now(), st.Images
	// The n-th image of the filled gallery: the originals first, then copy 1 of each, copy 2, ...
	// Writing from image have on (duplicates of a partial batch are skipped by their hash).
	var pending []*gallery.Image
	flush := func() error {
		if len(pending) == 0 {
			return nil
		}
		_, err := dst.PutImages(ctx, pending)
		pending = pending[:0]
		return err
	}
	for n := have; n < *size; n++ {
		orig := originals[n%len(originals)]
		img := orig
		if c := n / len(originals); c > 0 {
			img = synthCopy(orig, c)
		}
		pending = append(pending, img)
		if len(pending) == *batch {
			if err := flush(); err != nil {
				return err
			}
		}
		if (n+1)%10000 == 0 {
			fmt.Fprintf(os.Stderr, "fill: %d/%d images, %.0f images/s\n", n+1, *size, float64(n+1-have)/time.Since(start).Seconds())
		}
	}
	if err := flush(); err != nil {
		return err
	}
	st, err = dst.Stats(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "fill: %d images (%d written in %.1fs)\n", st.Images, st.Images-have, time.Since(start).Seconds())
	return nil
}

// readAll reads every image of a gallery with its regions and thumbnail.
func readAll(ctx context.Context, st gallery.Store) ([]*gallery.Image, error) {
	var out []*gallery.Image
	after := ""
	for {
		page, next, err := st.ListImages(ctx, after, 500)
		if err != nil {
			return nil, err
		}
		for _, p := range page {
			img, err := st.Image(ctx, p.ID, gallery.PartRegions|gallery.PartThumbnail)
			if err != nil {
				return nil, err
			}
			out = append(out, img)
		}
		if next == "" {
			return out, nil
		}
		after = next
	}
}

// synthCopy is copy c of img (see the command's comment).
func synthCopy(img *gallery.Image, c int) *gallery.Image {
	sum := sha256.Sum256(fmt.Appendf(nil, "copy %d of %s", c, img.SHA256))
	r := *img.Regions
	rng := rand.New(rand.NewPCG(uint64(c), binaryHash(sum[:])))
	scale := func(probs []float32, dim int) []float32 {
		out := make([]float32, len(probs))
		for i := 0; i+dim <= len(probs); i += dim {
			f := float32(0.85 + 0.15*rng.Float64())
			for j := range dim {
				out[i+j] = probs[i+j] * f
			}
		}
		return out
	}
	r.ClassProbs, r.AttrProbs = scale(r.ClassProbs, r.ClassDim), scale(r.AttrProbs, r.AttrDim)
	meta, _ := json.Marshal(map[string]any{"copy_of": img.ID, "copy": c})
	return &gallery.Image{ID: fmt.Sprintf("syn%d-%s", c, img.ID), SHA256: hex.EncodeToString(sum[:]), Source: img.Source,
		Width: img.Width, Height: img.Height, Format: img.Format, Metadata: meta, Created: img.Created, Regions: &r}
}

func binaryHash(b []byte) uint64 {
	var v uint64
	for _, x := range b[:8] {
		v = v<<8 | uint64(x)
	}
	return v
}
