package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/justpg/justpg/files"
	"github.com/justpg/justpg/jobs"
	"github.com/justpg/justpg/realtime"
	"github.com/justpg/justpg/tenancy"
)

// The app's jobs. Workers run on the system pool (jobs fetch every
// workspace's jobs); a worker that touches a workspace's data opens its own
// transaction scoped to the job's tenant on the app pool, where row-level
// security applies as it does to requests.

// previewJob makes an attachment's thumbnail (images) or text preview.
type previewJob struct {
	AttachmentID int64 `json:"attachment_id"`
}

func (previewJob) Kind() string { return "attachment_preview" }

// refreshWordsJob rebuilds a workspace's typo-tolerance word lists.
type refreshWordsJob struct{}

func (refreshWordsJob) Kind() string { return "search_refresh_words" }

// digestAllJob is the daily periodic job: it enqueues one digestJob per
// workspace, each stamped with its tenant.
type digestAllJob struct {
	Day string `json:"day"`
}

func (digestAllJob) Kind() string { return "digest_all" }

// digestJob writes one workspace's digest of a day.
type digestJob struct {
	Day string `json:"day"`
}

func (digestJob) Kind() string { return "digest" }

// backupJob takes a logical backup and drills it (restores it into a
// temporary database and checks every table's row count).
type backupJob struct{}

func (backupJob) Kind() string { return "backup_drill" }

// InsertOpts keeps backups on their own queue, one at a time.
func (backupJob) InsertOpts() jobs.InsertOpts {
	return jobs.InsertOpts{Queue: "backup", MaxAttempts: 3, Unique: &jobs.UniqueOpts{}}
}

const (
	thumbSize     = 240
	maxPixels     = 40_000_000 // refuse decompression bombs before decoding
	previewBytes  = 1000
	maxImageBytes = 25 << 20
)

func (a *App) newJobs() (*jobs.Client, error) {
	w := jobs.NewWorkers()
	jobs.AddWorker(w, a.workPreview, jobs.WorkerOptions{Timeout: time.Minute})
	jobs.AddWorker(w, a.workRefreshWords)
	jobs.AddWorker(w, a.workDigestAll)
	jobs.AddWorker(w, a.workDigest)
	jobs.AddWorker(w, a.workBackup, jobs.WorkerOptions{Timeout: 30 * time.Minute})
	day := func(slot time.Time) string { return slot.UTC().AddDate(0, 0, -1).Format(time.DateOnly) }
	return jobs.New(a.sys, jobs.Config{
		Workers: w,
		Queues: map[string]jobs.QueueConfig{
			jobs.DefaultQueue: {MaxWorkers: a.opt.Workers},
			"backup":          {MaxWorkers: 1},
		},
		FetchPollInterval: time.Second,
		Periodic: []jobs.PeriodicJob{
			{Name: "daily_digest", Schedule: a.opt.DigestSchedule, Args: func(slot time.Time) (jobs.JobArgs, *jobs.InsertOpts) {
				return digestAllJob{Day: day(slot)}, nil
			}},
			{Name: "daily_backup", Schedule: a.opt.BackupSchedule, Args: func(time.Time) (jobs.JobArgs, *jobs.InsertOpts) {
				return backupJob{}, nil
			}},
		},
		Hooks:  jobs.Hooks{OnStart: a.jobStarted, OnFinish: a.jobFinished},
		Logger: a.log,
	})
}

// jobEvent tells a workspace's browsers how one of its jobs is doing.
type jobEvent struct {
	Type  string `json:"type"` // "job"
	ID    int64  `json:"id"`
	Kind  string `json:"kind"`
	State string `json:"state"`
	Error string `json:"error,omitempty"`
}

func (a *App) jobStarted(ctx context.Context, j *jobs.JobRow) {
	a.publishJob(ctx, j, "running", nil)
}

func (a *App) jobFinished(ctx context.Context, j *jobs.JobRow, out jobs.Outcome) {
	state := "completed"
	if out.Err != nil {
		state = "failed"
	}
	a.publishJob(ctx, j, state, out.Err)
}

// publishJob sends a job's progress to its workspace's channel. Jobs that
// belong to no workspace (digest_all, backups) are not published.
func (a *App) publishJob(ctx context.Context, j *jobs.JobRow, state string, err error) {
	if j.TenantID == "" {
		return
	}
	ev := jobEvent{Type: "job", ID: j.ID, Kind: j.Kind, State: state}
	if err != nil {
		ev.Error = err.Error()
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := realtime.PublishJSON(ctx, a.broker, a.sys, tenantChannel(j.TenantID), ev); err != nil {
		a.log.Warn("publishing job progress", "job", j.ID, "err", err)
	}
}

// asTenant runs fn in a transaction scoped to the job's tenant.
func (a *App) asTenant(ctx context.Context, j *jobs.JobRow, fn func(tx pgx.Tx) error) error {
	id, err := uuid.Parse(j.TenantID)
	if err != nil {
		return jobs.Cancel(fmt.Errorf("job %d has no workspace", j.ID))
	}
	err = a.tm.WithTenant(ctx, a.app, id, fn)
	if errors.Is(err, tenancy.ErrNotFound) || errors.Is(err, tenancy.ErrDeleted) {
		return jobs.Cancel(err) // the workspace is gone: nothing to retry
	}
	return err
}

func (a *App) workPreview(ctx context.Context, j *jobs.Job[previewJob]) error {
	return a.asTenant(ctx, j.JobRow, func(tx pgx.Tx) error {
		var (
			noteID       int64
			fileID, name string
			ctype        string
		)
		err := tx.QueryRow(ctx, `SELECT note_id, file_id::text, name, content_type FROM public.attachments
			WHERE id = $1 FOR UPDATE`, j.Args.AttachmentID).Scan(&noteID, &fileID, &name, &ctype)
		if errors.Is(err, pgx.ErrNoRows) {
			return jobs.Cancel(errors.New("attachment deleted"))
		}
		if err != nil {
			return err
		}
		status, thumbID, preview, err := a.makePreview(ctx, tx, fileID, name, ctype)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE public.attachments SET status = $2, thumb_file_id = $3, preview = $4
			WHERE id = $1`, j.Args.AttachmentID, status, thumbID, preview); err != nil {
			return err
		}
		return realtime.PublishJSON(ctx, a.broker, tx, tenantChannel(j.TenantID),
			liveEvent{Type: "attachment", ID: j.Args.AttachmentID, NoteID: noteID})
	})
}

// makePreview reads the file and returns the attachment's new status with a
// thumbnail file (stored in tx) or a text preview.
func (a *App) makePreview(ctx context.Context, tx pgx.Tx, fileID, name, ctype string) (status string, thumbID *string, preview *string, err error) {
	rd, err := a.store.Get(ctx, tx, fileID)
	if err != nil {
		return "", nil, nil, err
	}
	defer rd.Close()
	switch {
	case ctype == "image/png" || ctype == "image/jpeg":
		cfg, _, err := image.DecodeConfig(rd)
		if err != nil || cfg.Width <= 0 || cfg.Height <= 0 || cfg.Width*cfg.Height > maxPixels {
			return "failed", nil, nil, nil // not an image we will decode: no retry
		}
		if _, err := rd.Seek(0, io.SeekStart); err != nil {
			return "", nil, nil, err
		}
		var img image.Image
		if ctype == "image/png" {
			img, err = png.Decode(io.LimitReader(rd, maxImageBytes))
		} else {
			img, err = jpeg.Decode(io.LimitReader(rd, maxImageBytes))
		}
		if err != nil {
			return "failed", nil, nil, nil
		}
		var buf bytes.Buffer
		if err := png.Encode(&buf, thumbnail(img, thumbSize)); err != nil {
			return "", nil, nil, err
		}
		f, err := a.store.Put(ctx, tx, &buf, files.PutOptions{
			Name: "thumbnail.png", ContentType: "image/png", Owner: "thumbnail",
			Metadata: []byte(fmt.Sprintf(`{"thumbnail_of":%q}`, fileID)),
		})
		if err != nil {
			return "", nil, nil, err
		}
		return "ready", &f.ID, nil, nil
	case strings.HasPrefix(ctype, "text/"):
		b, err := io.ReadAll(io.LimitReader(rd, previewBytes))
		if err != nil {
			return "", nil, nil, err
		}
		for len(b) > 0 && !utf8.Valid(b) { // a rune cut at the limit
			b = b[:len(b)-1]
		}
		s := strings.ToValidUTF8(string(b), "")
		return "ready", nil, &s, nil
	default:
		return "none", nil, nil, nil
	}
}

// thumbnail scales img down to fit in size×size, averaging the source
// pixels that fall in each target pixel (a box filter).
func thumbnail(img image.Image, size int) image.Image {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	tw, th := w, h
	if w > size || h > size {
		if w >= h {
			tw, th = size, max(1, h*size/w)
		} else {
			tw, th = max(1, w*size/h), size
		}
	}
	out := image.NewRGBA(image.Rect(0, 0, tw, th))
	for y := range th {
		y0, y1 := b.Min.Y+y*h/th, b.Min.Y+max((y+1)*h/th, y*h/th+1)
		for x := range tw {
			x0, x1 := b.Min.X+x*w/tw, b.Min.X+max((x+1)*w/tw, x*w/tw+1)
			var r, g, bl, al, n uint64
			for sy := y0; sy < y1; sy++ {
				for sx := x0; sx < x1; sx++ {
					cr, cg, cb, ca := img.At(sx, sy).RGBA()
					r, g, bl, al, n = r+uint64(cr), g+uint64(cg), bl+uint64(cb), al+uint64(ca), n+1
				}
			}
			out.Set(x, y, color.RGBA64{uint16(r / n), uint16(g / n), uint16(bl / n), uint16(al / n)})
		}
	}
	return out
}

func (a *App) workRefreshWords(ctx context.Context, j *jobs.Job[refreshWordsJob]) error {
	return a.asTenant(ctx, j.JobRow, func(tx pgx.Tx) error {
		if err := a.notesIx.RefreshWords(ctx, tx); err != nil {
			return err
		}
		return a.attIx.RefreshWords(ctx, tx)
	})
}

func (a *App) workDigestAll(ctx context.Context, j *jobs.Job[digestAllJob]) error {
	tenants, err := a.tm.List(ctx, a.sys)
	if err != nil {
		return err
	}
	for _, t := range tenants {
		if t.Usable() != nil {
			continue
		}
		err := a.tm.WithTenant(ctx, a.app, t.ID, func(tx pgx.Tx) error {
			_, err := a.jobs.Insert(ctx, tx, digestJob(j.Args), &jobs.InsertOpts{Unique: &jobs.UniqueOpts{ByArgs: true}})
			return err
		})
		if err != nil {
			return err // a retry skips the workspaces already enqueued (unique by day)
		}
	}
	return nil
}

func (a *App) workDigest(ctx context.Context, j *jobs.Job[digestJob]) error {
	day, err := time.Parse(time.DateOnly, j.Args.Day)
	if err != nil {
		return jobs.Cancel(err)
	}
	return a.asTenant(ctx, j.JobRow, func(tx pgx.Tx) error {
		var notes, nfiles int
		var titles []string
		err := tx.QueryRow(ctx, `SELECT
			(SELECT count(*) FROM public.notes WHERE updated_at >= $1 AND updated_at < $2),
			(SELECT count(*) FROM public.attachments WHERE created_at >= $1 AND created_at < $2),
			(SELECT coalesce(array_agg(title ORDER BY updated_at DESC), '{}') FROM
				(SELECT title, updated_at FROM public.notes WHERE updated_at >= $1 AND updated_at < $2
				 ORDER BY updated_at DESC LIMIT 5) t)`,
			day, day.AddDate(0, 0, 1)).Scan(&notes, &nfiles, &titles)
		if err != nil {
			return err
		}
		summary := fmt.Sprintf("%d note(s) written or edited, %d file(s) attached", notes, nfiles)
		if len(titles) > 0 {
			summary += ": " + strings.Join(titles, ", ")
		}
		if _, err := tx.Exec(ctx, `INSERT INTO public.digests (day, notes, files, summary) VALUES ($1, $2, $3, $4)
			ON CONFLICT (tenant_id, day) DO UPDATE SET notes = EXCLUDED.notes, files = EXCLUDED.files,
			summary = EXCLUDED.summary, created_at = now()`, day, notes, nfiles, summary); err != nil {
			return err
		}
		return realtime.PublishJSON(ctx, a.broker, tx, tenantChannel(j.TenantID), liveEvent{Type: "digest"})
	})
}

func (a *App) workBackup(ctx context.Context, _ *jobs.Job[backupJob]) error {
	man, err := a.backups.Dump(ctx)
	if err != nil {
		return err
	}
	rep, err := a.backups.Drill(ctx, man.ID)
	if err != nil {
		return jobs.Cancel(err) // the failed drill is recorded next to the backup; alerting reads it
	}
	a.log.Info("backup drilled", "id", rep.ID, "rto", rep.Restore, "rows", rep.Rows)
	// The newest good backup is never pruned, whatever the policy.
	if _, err := a.backups.Prune(ctx, a.opt.Retention); err != nil {
		a.log.Warn("pruning backups", "err", err)
	}
	return nil
}
