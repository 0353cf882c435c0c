package fsm

func applySetPool(t *tx, c *SetPool) *Response {
	p := c.Pool
	switch {
	case p.MinSize < 0 || p.MaxSize < 1 || p.MinSize > p.MaxSize:
		return fail(errorf(CodeInvalid, "pool sizes must satisfy 0 <= min (%d) <= max (%d) and max >= 1", p.MinSize, p.MaxSize))
	case p.Image == "":
		return fail(errorf(CodeInvalid, "pool image is required"))
	}
	t.setPool(p)
	return &Response{}
}
