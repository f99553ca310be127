package generate

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"

	"github.com/valyala/fasthttp"

	"github.com/idgen/idgen/shared/idcodec"
)

// decodeBody decodes a JSON request body strictly into v: Content-Type must
// be JSON, unknown fields and trailing data are refused. An empty body
// decodes to v's zero value only when allowEmpty.
func decodeBody(c *fasthttp.RequestCtx, v any, allowEmpty bool) error {
	body := c.PostBody()
	if len(body) > maxBody(c) {
		return Errorf(CodeBodyTooLarge, "request body is larger than %d bytes", maxBody(c))
	}
	if len(bytes.TrimSpace(body)) == 0 {
		if allowEmpty {
			return nil
		}
		return Errorf(CodeInvalidRequest, "a JSON body is required")
	}
	if ct := c.Request.Header.ContentType(); len(ct) > 0 || !allowEmpty {
		mt, _, err := mime.ParseMediaType(string(ct))
		if err != nil || mt != "application/json" {
			return Errorf(CodeUnsupportedMedia, "Content-Type must be application/json")
		}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return Errorf(CodeInvalidRequest, "malformed JSON body: %s", jsonErrorText(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Errorf(CodeInvalidRequest, "malformed JSON body: data after the object")
	}
	return nil
}

func jsonErrorText(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return "field " + te.Field + " must be " + te.Type.String()
	}
	return err.Error()
}

// idBody is the body of /commit and /compensate.
type idBody struct {
	ID     *string `json:"id"`
	Reason string  `json:"reason"`
}

func (b *idBody) parseID() (idcodec.ID, error) {
	if b.ID == nil {
		return idcodec.ID{}, Errorf(CodeInvalidRequest, `field "id" is required`)
	}
	return idcodec.Parse(*b.ID)
}

type maxBodyKey struct{}

// maxBody is the body limit Handle stored on the request (Config.MaxBody).
func maxBody(c *fasthttp.RequestCtx) int {
	if n, ok := c.UserValue(maxBodyKey{}).(int); ok {
		return n
	}
	return 64 << 10
}
