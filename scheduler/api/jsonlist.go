package api

import (
	"bufio"
	"encoding/json"
	"net/http"
)

// jsonList is a JSON array whose items are encoded already; writeJSON
// writes it as they are, without json.Marshal's encoding and validation of
// the whole (at 100,000 jobs, tens of megabytes). The items come from
// encoding/json, so the array is what json.Marshal of the values would
// write.
type jsonList []json.RawMessage

// writeJSONList writes l as writeJSON writes a value, through a buffer so
// that the items do not each make a write of the connection.
func writeJSONList(w http.ResponseWriter, code int, l jsonList) {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	bw := bufio.NewWriterSize(w, 64<<10)
	_ = bw.WriteByte('[')
	for i, item := range l {
		if i > 0 {
			_ = bw.WriteByte(',')
		}
		_, _ = bw.Write(item)
	}
	_, _ = bw.WriteString("]\n")
	_ = bw.Flush()
}
