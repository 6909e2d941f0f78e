"""The names of the account's IAM roles and instance profiles that every cluster's machines run as.

clusterawsadm's names, so machines find them where Cluster API's documentation says they are; each
role has the instance profile of its name.
"""

CONTROL_PLANE_PROFILE = "control-plane.cluster-api-provider-aws.sigs.k8s.io"
NODES_PROFILE = "nodes.cluster-api-provider-aws.sigs.k8s.io"
