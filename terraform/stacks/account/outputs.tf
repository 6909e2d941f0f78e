output "control_plane_profile" {
  value = module.node_iam.control_plane_profile
}

output "nodes_profile" {
  value = module.node_iam.nodes_profile
}

output "inputs_digest" {
  value = var.inputs_digest
}
