Feature: A new cluster on the local target
  A platform engineer with no AWS account creates a cluster on the embedded
  AWS endpoint; reviewers approve it; Flux would apply only signed commits.

  Scenario: An empty fleet gets a signed cluster that matches the network; re-running it changes nothing
    Given an empty fleet
    When I run new-cluster "demo" in GitHub Actions with --json
    Then the run succeeds
    And its JSON result, step outputs and job summary name the commit on "cluster/demo"
    And branch "cluster/demo" holds a commit signed by a trusted key
    And the AWSCluster on "cluster/demo" names the VPC and subnets that exist in the AWS endpoint
    When I approve "demo"
    Then the run succeeds
    And main holds a commit signed by a trusted key
    And the AWSCluster on "main" names the VPC and subnets that exist in the AWS endpoint
    When I run new-cluster "demo" again with the same inputs
    Then the run succeeds
    And it reports that the network and the fleet are unchanged
    And the fleet's branches are as they were
    And every run cloned the fleet once
