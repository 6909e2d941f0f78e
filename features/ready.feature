Feature: A cluster that the reconciler can bring to Ready
  Once its signed commit is on main, Flux on the management cluster builds the cluster
  and installs what makes it Ready into it, then reports its health back to the forge.

  Scenario: Three zones, a pool of five, add-ons in order, node IAM, health reported; upgrades one minor at a time
    Given an empty fleet
    And a spec for "ready" with 3 zones, a pool "web" of 5 workers and an AMI of the AWS endpoint
    When I run new-cluster "ready" with that spec
    Then the run succeeds
    When I approve "ready"
    Then the run succeeds
    And main holds 3 MachineDeployments of pool "web" with failure domains and 2/2/1 replicas
    And main holds MachineHealthChecks for the control plane and pool "web"
    And the add-ons go to the workload cluster through "ready-kubeconfig" in the order CNI, CCM, CSI
    And the cloud-controller-manager runs the image of Kubernetes v1.31
    And every AWSMachineTemplate names an instance profile that exists on the AWS endpoint
    And the fleet holds the Provider and Alert that post each cluster's health as commit statuses
    And the cluster keeps the security baseline, on the AWS endpoint and in its manifests on main
    And verify passes main: every folder builds with kubectl kustomize, strict schemas and CEL rules
    When the spec for "ready" asks for Kubernetes "v1.33.0"
    And I run new-cluster "ready" with that spec
    Then it exits 2 before Terraform runs, naming "kubernetesVersion", and the fleet's branches are as they were
    When the spec for "ready" asks for Kubernetes "v1.32.0"
    And I run new-cluster "ready" with that spec
    Then the run succeeds
    And the new commit on "cluster/ready" changes only addons.yaml, controlplane.yaml, machinetemplates.yaml and workers.yaml
    And the cloud-controller-manager on "cluster/ready" runs the image of Kubernetes v1.32
