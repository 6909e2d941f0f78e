output "control_plane_profile" {
  value = aws_iam_instance_profile.control_plane.name
}

output "nodes_profile" {
  value = aws_iam_instance_profile.nodes.name
}
