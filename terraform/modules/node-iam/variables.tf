variable "control_plane_name" {
  description = "The name of the control-plane nodes' role, instance profile and policy."
  type        = string
}

variable "nodes_name" {
  description = "The name of the worker nodes' role, instance profile and policy."
  type        = string
}
