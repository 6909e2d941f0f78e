# The roles and instance profiles that every cluster's machines run as, with the permissions
# Cluster API Provider AWS documents for them (clusterawsadm's bootstrap template): the
# cloud-controller-manager on the control plane, the kubelet and image pulls on every node,
# and the EBS CSI controller, which runs on the control plane only.

locals {
  ec2_trust = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Action    = ["sts:AssumeRole"]
      Principal = { Service = ["ec2.amazonaws.com"] }
    }]
  })
}

resource "aws_iam_role" "control_plane" {
  name               = var.control_plane_name
  assume_role_policy = local.ec2_trust
}

resource "aws_iam_role" "nodes" {
  name               = var.nodes_name
  assume_role_policy = local.ec2_trust
}

resource "aws_iam_policy" "control_plane" {
  #checkov:skip=CKV_AWS_289:the resources are made later by the cluster (instances, volumes, load balancers) so their ids are unknown here; the actions are CAPA's documented set
  #checkov:skip=CKV_AWS_290:the resources are made later by the cluster (instances, volumes, load balancers) so their ids are unknown here; the actions are CAPA's documented set
  #checkov:skip=CKV_AWS_355:the resources are made later by the cluster (instances, volumes, load balancers) so their ids are unknown here; the actions are CAPA's documented set
  name        = var.control_plane_name
  description = "For the AWS cloud-controller-manager on control-plane nodes"
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect   = "Allow"
      Resource = ["*"]
      Action = [
        "autoscaling:DescribeAutoScalingGroups",
        "autoscaling:DescribeLaunchConfigurations",
        "autoscaling:DescribeTags",
        "ec2:AssignIpv6Addresses",
        "ec2:AttachVolume",
        "ec2:AuthorizeSecurityGroupIngress",
        "ec2:CreateRoute",
        "ec2:CreateSecurityGroup",
        "ec2:CreateTags",
        "ec2:CreateVolume",
        "ec2:DeleteRoute",
        "ec2:DeleteSecurityGroup",
        "ec2:DeleteVolume",
        "ec2:DescribeImages",
        "ec2:DescribeInstances",
        "ec2:DescribeRegions",
        "ec2:DescribeRouteTables",
        "ec2:DescribeSecurityGroups",
        "ec2:DescribeSubnets",
        "ec2:DescribeVolumes",
        "ec2:DescribeVpcs",
        "ec2:DetachVolume",
        "ec2:ModifyInstanceAttribute",
        "ec2:ModifyVolume",
        "ec2:RevokeSecurityGroupIngress",
        "elasticloadbalancing:AddTags",
        "elasticloadbalancing:ApplySecurityGroupsToLoadBalancer",
        "elasticloadbalancing:AttachLoadBalancerToSubnets",
        "elasticloadbalancing:ConfigureHealthCheck",
        "elasticloadbalancing:CreateListener",
        "elasticloadbalancing:CreateLoadBalancer",
        "elasticloadbalancing:CreateLoadBalancerListeners",
        "elasticloadbalancing:CreateLoadBalancerPolicy",
        "elasticloadbalancing:CreateTargetGroup",
        "elasticloadbalancing:DeleteListener",
        "elasticloadbalancing:DeleteLoadBalancer",
        "elasticloadbalancing:DeleteLoadBalancerListeners",
        "elasticloadbalancing:DeleteTargetGroup",
        "elasticloadbalancing:DeregisterInstancesFromLoadBalancer",
        "elasticloadbalancing:DeregisterTargets",
        "elasticloadbalancing:DescribeListeners",
        "elasticloadbalancing:DescribeLoadBalancerAttributes",
        "elasticloadbalancing:DescribeLoadBalancerPolicies",
        "elasticloadbalancing:DescribeLoadBalancers",
        "elasticloadbalancing:DescribeTargetGroups",
        "elasticloadbalancing:DescribeTargetHealth",
        "elasticloadbalancing:DetachLoadBalancerFromSubnets",
        "elasticloadbalancing:ModifyListener",
        "elasticloadbalancing:ModifyLoadBalancerAttributes",
        "elasticloadbalancing:ModifyTargetGroup",
        "elasticloadbalancing:RegisterInstancesWithLoadBalancer",
        "elasticloadbalancing:RegisterTargets",
        "elasticloadbalancing:SetLoadBalancerPoliciesForBackendServer",
        "elasticloadbalancing:SetLoadBalancerPoliciesOfListener",
        "iam:CreateServiceLinkedRole",
        "kms:DescribeKey",
      ]
    }]
  })
}

resource "aws_iam_policy" "nodes" {
  #checkov:skip=CKV_AWS_290:the resources are made later by the cluster (instances, volumes, load balancers) so their ids are unknown here; the actions are CAPA's documented set
  #checkov:skip=CKV_AWS_355:the resources are made later by the cluster (instances, volumes, load balancers) so their ids are unknown here; the actions are CAPA's documented set
  name        = var.nodes_name
  description = "For the kubelet and image pulls on every node"
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Effect   = "Allow"
        Resource = ["*"]
        Action = [
          "ec2:AssignIpv6Addresses",
          "ec2:CreateTags",
          "ec2:DescribeInstanceTypes",
          "ec2:DescribeInstances",
          "ec2:DescribeNetworkInterfaces",
          "ec2:DescribeRegions",
          "ec2:DescribeTags",
          "ecr:BatchCheckLayerAvailability",
          "ecr:BatchGetImage",
          "ecr:DescribeRepositories",
          "ecr:GetAuthorizationToken",
          "ecr:GetDownloadUrlForLayer",
          "ecr:GetRepositoryPolicy",
          "ecr:ListImages",
        ]
      },
      {
        # Cluster API hands each machine its bootstrap data through these secrets, then deletes them.
        Effect   = "Allow"
        Resource = ["arn:*:secretsmanager:*:*:secret:aws.cluster.x-k8s.io/*"]
        Action   = ["secretsmanager:DeleteSecret", "secretsmanager:GetSecretValue"]
      },
      {
        Effect   = "Allow"
        Resource = ["*"]
        Action = [
          "s3:GetEncryptionConfiguration",
          "ssm:UpdateInstanceInformation",
          "ssmmessages:CreateControlChannel",
          "ssmmessages:CreateDataChannel",
          "ssmmessages:OpenControlChannel",
          "ssmmessages:OpenDataChannel",
        ]
      },
    ]
  })
}

resource "aws_iam_policy" "ebs_csi" {
  #checkov:skip=CKV_AWS_290:the resources are made later by the cluster (instances, volumes, load balancers) so their ids are unknown here; the actions are CAPA's documented set
  #checkov:skip=CKV_AWS_355:the resources are made later by the cluster (instances, volumes, load balancers) so their ids are unknown here; the actions are CAPA's documented set
  name        = "ebs-csi.${var.control_plane_name}"
  description = "For the EBS CSI controller, which runs on control-plane nodes"
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect   = "Allow"
      Resource = ["*"]
      Action = [
        "ec2:AttachVolume",
        "ec2:CreateSnapshot",
        "ec2:CreateTags",
        "ec2:CreateVolume",
        "ec2:DeleteSnapshot",
        "ec2:DeleteTags",
        "ec2:DeleteVolume",
        "ec2:DescribeAvailabilityZones",
        "ec2:DescribeInstances",
        "ec2:DescribeSnapshots",
        "ec2:DescribeTags",
        "ec2:DescribeVolumes",
        "ec2:DescribeVolumesModifications",
        "ec2:DetachVolume",
        "ec2:ModifyVolume",
      ]
    }]
  })
}

resource "aws_iam_role_policy_attachment" "control_plane" {
  for_each = {
    control_plane = aws_iam_policy.control_plane.arn
    nodes         = aws_iam_policy.nodes.arn
    ebs_csi       = aws_iam_policy.ebs_csi.arn
  }

  role       = aws_iam_role.control_plane.name
  policy_arn = each.value
}

resource "aws_iam_role_policy_attachment" "nodes" {
  role       = aws_iam_role.nodes.name
  policy_arn = aws_iam_policy.nodes.arn
}

resource "aws_iam_instance_profile" "control_plane" {
  name = var.control_plane_name
  role = aws_iam_role.control_plane.name
}

resource "aws_iam_instance_profile" "nodes" {
  name = var.nodes_name
  role = aws_iam_role.nodes.name
}
