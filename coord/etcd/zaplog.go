package etcd

import (
	"slices"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/zap/zapcore"
)

// hclogCore is a zapcore.Core that hands etcd's zap records to an hclog
// logger, so that the client and the embedded server log through the one
// logger hasched passes down instead of writing JSON to stderr.
type hclogCore struct {
	log    hclog.Logger
	min    zapcore.Level
	fields []zapcore.Field
}

func newHclogCore(log hclog.Logger, min zapcore.Level) zapcore.Core {
	return &hclogCore{log: log, min: min}
}

func (h *hclogCore) Enabled(l zapcore.Level) bool { return l >= h.min }

func (h *hclogCore) With(fields []zapcore.Field) zapcore.Core {
	return &hclogCore{log: h.log, min: h.min, fields: append(slices.Clip(h.fields), fields...)}
}

func (h *hclogCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if h.Enabled(e.Level) {
		return ce.AddCore(e, h)
	}
	return ce
}

func (h *hclogCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range h.fields {
		f.AddTo(enc)
	}
	for _, f := range fields {
		f.AddTo(enc)
	}
	keys := make([]string, 0, len(enc.Fields))
	for k := range enc.Fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	args := make([]any, 0, 2*len(keys)+2)
	if e.LoggerName != "" {
		args = append(args, "logger", e.LoggerName)
	}
	for _, k := range keys {
		args = append(args, k, enc.Fields[k])
	}
	switch {
	case e.Level >= zapcore.ErrorLevel:
		h.log.Error(e.Message, args...)
	case e.Level == zapcore.WarnLevel:
		h.log.Warn(e.Message, args...)
	case e.Level == zapcore.InfoLevel:
		h.log.Info(e.Message, args...)
	default:
		h.log.Debug(e.Message, args...)
	}
	return nil
}

func (h *hclogCore) Sync() error { return nil }
