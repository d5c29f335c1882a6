package alert

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Headers of a delivery.
const (
	HeaderEvent     = "X-Hasched-Event"
	HeaderDelivery  = "X-Hasched-Delivery"
	HeaderTimestamp = "X-Hasched-Timestamp"
	HeaderSignature = "X-Hasched-Signature"
)

// maxResponseBytes is as much of a receiver's answer as is read (so that
// the connection can be reused); the rest is dropped with the connection.
const maxResponseBytes = 64 << 10

// errRedirect: a receiver redirected elsewhere. Not retried: the URL is
// wrong, and following it could carry the alert (and its signature) to a
// host the operator did not name.
var errRedirect = errors.New("redirect to another origin refused")

// sameOrigin is the client's CheckRedirect: a few redirects on the
// receiver's own scheme and host, nothing else.
func sameOrigin(req *http.Request, via []*http.Request) error {
	if len(via) >= 3 {
		return fmt.Errorf("%w: more than 3 redirects", errRedirect)
	}
	first := via[0].URL
	if req.URL.Scheme != first.Scheme || req.URL.Host != first.Host {
		return errRedirect
	}
	return nil
}

// Sign is the X-Hasched-Signature of body sent at timestamp (Unix seconds,
// as X-Hasched-Timestamp gives it) under secret: what a receiver computes
// to verify a delivery.
func Sign(secret []byte, timestamp string, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(timestamp))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// statusError is a receiver's answer other than 2xx.
type statusError struct {
	code       int
	retryAfter time.Duration // -1 if none
}

func (e *statusError) Error() string { return fmt.Sprintf("receiver answered %d", e.code) }

func (e *statusError) retryable() bool {
	return e.code >= 500 || e.code == http.StatusTooManyRequests || e.code == http.StatusRequestTimeout
}

// deliver posts d to rc until it is accepted, a permanent error, the
// receiver's MaxAttempts, or ctx's end.
func (n *Notifier) deliver(ctx context.Context, rc *receiver, d delivery) error {
	var err error
	for attempt := 1; ; attempt++ {
		err = n.attempt(ctx, rc, d)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		wait := n.backoff(attempt)
		var se *statusError
		switch {
		case errors.As(err, &se) && !se.retryable():
			return err
		case errors.As(err, &se) && se.retryAfter >= 0:
			wait = max(wait, min(se.retryAfter, n.cfg.MaxRetryAfter))
		case errors.Is(err, errRedirect):
			return err
		}
		if attempt >= rc.MaxAttempts {
			return fmt.Errorf("gave up after %d attempts: %w", attempt, err)
		}
		n.log.Debug("alert attempt failed; retrying", "receiver", rc.Name, "delivery", d.id, "attempt", attempt, "wait", wait, "error", err)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
}

// backoff is the wait after attempt (1-based): Backoff doubled per
// attempt, capped at MaxBackoff, the upper half of it random, so that
// the deliveries of one burst do not come back together.
func (n *Notifier) backoff(attempt int) time.Duration {
	d := n.cfg.Backoff
	for i := 1; i < attempt && d < n.cfg.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, n.cfg.MaxBackoff)
	half := d / 2
	return half + rand.N(half+1)
}

// attempt makes one POST. Its errors never carry the URL: a Slack
// webhook's path is its credential, and URLs may hold a password.
func (n *Notifier) attempt(ctx context.Context, rc *receiver, d delivery) error {
	ctx, cancel := context.WithTimeout(ctx, rc.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rc.URL, bytes.NewReader(d.body))
	if err != nil {
		return errors.New("cannot make a request of the receiver's URL")
	}
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "hasched-alert")
	req.Header.Set(HeaderEvent, string(d.class))
	req.Header.Set(HeaderDelivery, d.id)
	req.Header.Set(HeaderTimestamp, ts)
	if rc.Secret != nil {
		req.Header.Set(HeaderSignature, Sign(rc.Secret, ts, d.body))
	}
	resp, err := n.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error's text is the URL
		}
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseBytes))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	return &statusError{code: resp.StatusCode, retryAfter: retryAfter(resp.Header.Get("Retry-After"))}
}

// retryAfter reads a Retry-After header, seconds or an HTTP date; -1 if
// there is none or it does not parse.
func retryAfter(h string) time.Duration {
	if h == "" {
		return -1
	}
	if s, err := strconv.ParseInt(h, 10, 64); err == nil {
		if s < 0 {
			return -1
		}
		if s > int64(MaxBackoff/time.Second) {
			return MaxBackoff
		}
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil {
		return max(0, time.Until(t))
	}
	return -1
}

// Errors of Verify.
var (
	ErrBadSignature = errors.New("alert: signature does not match")
	ErrStale        = errors.New("alert: timestamp outside the accepted window")
)

// Verify is a receiver's check of a delivery (in Go; the package doc says
// it in words): the signature header must be Sign(secret, timestamp,
// body) and the timestamp within maxAge of now, either way, so that a
// captured delivery cannot be replayed later.
func Verify(secret []byte, timestamp, signature string, body []byte, now time.Time, maxAge time.Duration) error {
	sec, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: %s is not Unix seconds", ErrStale, HeaderTimestamp)
	}
	if age := now.Sub(time.Unix(sec, 0)); age > maxAge || age < -maxAge {
		return fmt.Errorf("%w: %v old", ErrStale, age.Round(time.Second))
	}
	if !hmac.Equal([]byte(signature), []byte(Sign(secret, timestamp, body))) {
		return ErrBadSignature
	}
	return nil
}
