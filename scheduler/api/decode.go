package api

import (
	"bytes"
	"errors"

	"github.com/hasched/hasched/scheduler/model"
)

// decodeApp reads an app from a request body with the model's decoder,
// which applies the defaults (the scheduler validates); every error is a
// 400.
func decodeApp(body []byte) (model.App, error) {
	app, err := model.DecodeApp(bytes.NewReader(body))
	return app, requestError(err)
}

// decodeJob reads a job from a request body, like decodeApp.
func decodeJob(body []byte) (model.Job, error) {
	job, err := model.DecodeJob(bytes.NewReader(body))
	return job, requestError(err)
}

// requestError makes any decoding error a 400: the decoders name the field
// in a *model.ValidationError; anything else is about the body.
func requestError(err error) error {
	var verr *model.ValidationError
	if err == nil || errors.As(err, &verr) {
		return err
	}
	return &badRequestError{field: "body", err: err}
}

// decodeAppUpdate reads an app update body; every error is a 400.
func decodeAppUpdate(body []byte) (model.AppUpdate, error) {
	u, err := model.DecodeAppUpdate(bytes.NewReader(body))
	return u, requestError(err)
}

// decodeJobUpdate reads a job update body; every error is a 400.
func decodeJobUpdate(body []byte) (model.JobUpdate, error) {
	u, err := model.DecodeJobUpdate(bytes.NewReader(body))
	return u, requestError(err)
}
