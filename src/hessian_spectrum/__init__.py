"""hessian-spectrum."""
